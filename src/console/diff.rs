//! A line diff of two texts (two revisions of a flow's YAML): the longest common subsequence of
//! their lines, shown as kept, removed and added lines. Flows are short; past [`MAX_LINES`]
//! lines a side the diff is not computed (the table would be quadratic).

/// Lines a side beyond which no diff is made.
pub const MAX_LINES: usize = 3000;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    /// `" "` kept, `"-"` only in the old text, `"+"` only in the new one.
    pub sign: &'static str,
    pub text: String,
}

/// The lines of `old` and `new` in order, each marked; `None` when a side is too long.
pub fn diff(old: &str, new: &str) -> Option<Vec<DiffLine>> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return None;
    }
    // common[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let line = |sign, text: &str| DiffLine {
        sign,
        text: text.to_string(),
    };
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(line(" ", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if common[i + 1][j] >= common[i][j + 1] {
            out.push(line("-", a[i]));
            i += 1;
        } else {
            out.push(line("+", b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|t| line("-", t)));
    out.extend(b[j..].iter().map(|t| line("+", t)));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signs(lines: &[DiffLine]) -> String {
        lines
            .iter()
            .map(|l| format!("{}{}\n", l.sign, l.text))
            .collect()
    }

    #[test]
    fn changed_lines_are_removed_then_added() {
        let d = diff(
            "id: x\nmap: {a: 1}\nend\n",
            "id: x\nmap: {a: 2}\nend\nmore\n",
        )
        .unwrap();
        assert_eq!(
            signs(&d),
            " id: x\n-map: {a: 1}\n+map: {a: 2}\n end\n+more\n"
        );
        assert_eq!(signs(&diff("a\nb\n", "a\nb\n").unwrap()), " a\n b\n");
        assert_eq!(signs(&diff("", "a\n").unwrap()), "+a\n");
    }

    #[test]
    fn long_texts_are_not_compared() {
        let long = "x\n".repeat(MAX_LINES + 1);
        assert!(diff(&long, "x\n").is_none());
    }
}
