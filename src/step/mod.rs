//! Step kinds. Each kind lives in one file named after its YAML key (`map`, `http`, `notify`,
//! `delay`) and holds its configuration type (part of the flow format) and, as the runner grows,
//! its execution. [`StepKind`] is a closed enum: an exhaustive `match` reads best for a few kinds.

pub mod delay;
pub mod http;
pub mod map;
pub mod notify;

use crate::flow::model::StepDef;

/// The kind of a step with its configuration.
#[derive(Debug, Clone, Copy)]
pub enum StepKind<'a> {
    Map(&'a map::MapConfig),
    Http(&'a http::HttpConfig),
    Notify(&'a notify::NotifyConfig),
    Delay(&'a delay::DelayConfig),
}

impl StepKind<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Map(_) => "map",
            StepKind::Http(_) => "http",
            StepKind::Notify(_) => "notify",
            StepKind::Delay(_) => "delay",
        }
    }
}

impl StepDef {
    /// Every kind key set on this step; a valid step has exactly one.
    pub fn kinds(&self) -> Vec<StepKind<'_>> {
        let mut kinds = Vec::with_capacity(1);
        if let Some(c) = &self.map {
            kinds.push(StepKind::Map(c));
        }
        if let Some(c) = &self.http {
            kinds.push(StepKind::Http(c));
        }
        if let Some(c) = &self.notify {
            kinds.push(StepKind::Notify(c));
        }
        if let Some(c) = &self.delay {
            kinds.push(StepKind::Delay(c));
        }
        kinds
    }

    /// The step's kind; `None` only for a step that failed validation.
    pub fn kind(&self) -> Option<StepKind<'_>> {
        self.kinds().into_iter().next()
    }
}
