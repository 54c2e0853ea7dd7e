//! The random part of retry backoff (±20 %, SPEC §4): a seedable generator, so that tests can
//! replay the same waits, and production spreads the retries of many runs apart.

use std::sync::{Arc, Mutex};

/// A source of jitter factors in [-1, 1]. Cloning shares the generator.
#[derive(Debug, Clone)]
pub struct Jitter {
    rng: Arc<Mutex<fastrand::Rng>>,
}

impl Jitter {
    /// Seeded from the operating system's randomness.
    pub fn random() -> Jitter {
        Jitter::from_rng(fastrand::Rng::new())
    }

    /// The same sequence for the same seed.
    pub fn seeded(seed: u64) -> Jitter {
        Jitter::from_rng(fastrand::Rng::with_seed(seed))
    }

    fn from_rng(rng: fastrand::Rng) -> Jitter {
        Jitter {
            rng: Arc::new(Mutex::new(rng)),
        }
    }

    /// The next factor, uniform in [-1, 1].
    pub fn next(&self) -> f64 {
        let unit = match self.rng.lock() {
            Ok(mut rng) => rng.f64(),
            Err(poisoned) => poisoned.into_inner().f64(),
        };
        unit * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_stay_in_range_and_a_seed_replays_them() {
        let (a, b) = (Jitter::seeded(7), Jitter::seeded(7));
        let first: Vec<f64> = (0..1000).map(|_| a.next()).collect();
        let second: Vec<f64> = (0..1000).map(|_| b.next()).collect();
        assert_eq!(first, second);
        assert!(first.iter().all(|f| (-1.0..=1.0).contains(f)));
        assert!(first.iter().any(|f| *f < -0.5) && first.iter().any(|f| *f > 0.5));
    }
}
