//! A linear pre-scan of template source that runs before the handlebars
//! parser.
//!
//! It exists for safety: the handlebars crate parses nested subexpressions
//! recursively and overflows the stack at around a thousand levels, which a
//! hostile flow can reach with a few kilobytes of `(`. The scan mirrors the
//! lexical rules of the handlebars grammar (escapes, comments, string
//! literals, `[...]` keys) closely enough to know which brackets are code, so
//! it can reject deep nesting before the parser ever sees it. Where it cannot
//! tell code from data (object literals, quotes inside `[...]`), it rejects
//! the construct instead of guessing; none of those are supported anyway.
//!
//! Long `{{else}}` chains need a bound too: handlebars stores each branch
//! nested inside the previous one, and dropping that tree recurses once per
//! branch.
//!
//! As a by-product it records where every tag starts, which the compiler uses
//! to give its own errors precise positions.

/// Blocks plus `{{else}}` branches that may enclose any point of a template.
/// About 100 bytes of stack each when handlebars drops its tree; real
/// templates need a handful.
const MAX_ENCLOSING_BRANCHES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScanError {
    pub(super) offset: usize,
    pub(super) message: String,
}

/// Byte offsets of every `{{` that opens a tag or comment, in source order.
pub(super) fn scan(source: &str, max_depth: usize) -> Result<Vec<usize>, ScanError> {
    let mut scanner = Scanner {
        src: source.as_bytes(),
        pos: 0,
        open_blocks: Vec::new(),
        enclosing_branches: 0,
        max_depth,
        tags: Vec::new(),
    };
    scanner.run()?;
    Ok(scanner.tags)
}

struct Scanner<'a> {
    src: &'a [u8],
    pos: usize,
    /// For each open block, the number of `{{else}}` tags seen so far.
    open_blocks: Vec<usize>,
    /// Open blocks plus all their `{{else}}` branches so far.
    enclosing_branches: usize,
    max_depth: usize,
    tags: Vec<usize>,
}

fn error(offset: usize, message: impl Into<String>) -> ScanError {
    ScanError {
        offset,
        message: message.into(),
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The grammar's `symbol_char`: what may continue an identifier.
fn is_symbol_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'$' | b':') || b >= 0x80
}

impl Scanner<'_> {
    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    fn starts_with(&self, i: usize, s: &[u8]) -> bool {
        self.src.get(i..).is_some_and(|rest| rest.starts_with(s))
    }

    fn find(&self, from: usize, s: &[u8]) -> Option<usize> {
        let rest = self.src.get(from..)?;
        rest.windows(s.len()).position(|w| w == s).map(|i| from + i)
    }

    fn skip_space(&self, mut i: usize) -> usize {
        while is_space(self.at(i)) {
            i += 1;
        }
        i
    }

    fn run(&mut self) -> Result<(), ScanError> {
        while self.pos < self.src.len() {
            if self.at(self.pos) == b'\\' {
                self.skip_escape();
            } else if self.starts_with(self.pos, b"{{") {
                self.tag()?;
            } else {
                self.pos += 1;
            }
        }
        Ok(())
    }

    /// Same rule as the grammar's `escape`: `\{{` (optionally `\{{{{`) is
    /// literal text, while a run of two or more backslashes before `{{`
    /// stays text and leaves the `{{` to open a real tag.
    fn skip_escape(&mut self) {
        let start = self.pos;
        if self.starts_with(start + 1, b"{{") {
            self.pos = start + 3;
            if self.starts_with(self.pos, b"{{") {
                self.pos += 2;
            }
            return;
        }
        let mut end = start + 1;
        while self.at(end) == b'\\' {
            end += 1;
        }
        self.pos = if end > start + 1 && self.starts_with(end, b"{{") {
            end
        } else {
            start + 1
        };
    }

    fn tag(&mut self) -> Result<(), ScanError> {
        let start = self.pos;
        if self.starts_with(start, b"{{{{") {
            return Err(error(start, "raw blocks ({{{{raw}}}}) are not supported"));
        }
        self.tags.push(start);
        if self.at(start + 2) == b'!' {
            self.comment(start);
            return Ok(());
        }
        let mut i = self.skip_space(start + 2);
        if self.at(i) == b'~' {
            i = self.skip_space(i + 1);
        }
        i = self.tag_head(start, i)?;
        if self.is_lone_string(i) {
            return Err(error(
                start,
                "a string literal cannot stand alone in `{{ }}`; for literal braces write `\\{{`, or use `{{concat '...'}}`",
            ));
        }
        self.code(i)
    }

    /// `{{ 'text' }}` is valid Handlebars.js (where it looks up a property
    /// named `text`) but not valid in this grammar; people write it to get
    /// literal braces, so point them to the escape instead of a parse error.
    fn is_lone_string(&self, i: usize) -> bool {
        let open = self.skip_space(i);
        if !matches!(self.at(open), b'"' | b'\'') {
            return false;
        }
        let mut j = self.skip_space(self.string_end(open));
        if self.at(j) == b'~' {
            j += 1;
        }
        if self.at(j) == b'}' && self.at(j + 1) == b'}' && self.at(j + 2) == b'}' {
            j += 1;
        }
        self.starts_with(j, b"}}")
    }

    fn comment(&mut self, start: usize) {
        let body = self.skip_space(start + 3);
        if self.starts_with(body, b"--")
            && let Some(end) = self.find(body + 2, b"--}}")
        {
            self.pos = end + 4;
            return;
        }
        self.pos = self
            .find(start + 3, b"}}")
            .map_or(self.src.len(), |end| end + 2);
    }

    /// Handles the sigil after `{{`: rejects the unsupported tag kinds and
    /// tracks block structure. Returns where the tag's expression starts.
    fn tag_head(&mut self, start: usize, i: usize) -> Result<usize, ScanError> {
        match self.at(i) {
            b'>' => Err(error(start, "partials are not supported")),
            b'*' => Err(error(start, "decorators are not supported")),
            b'#' => {
                let j = self.skip_space(i + 1);
                match self.at(j) {
                    b'>' => Err(error(start, "partials are not supported")),
                    b'*' => Err(error(
                        start,
                        "inline partials and decorators are not supported",
                    )),
                    _ => {
                        self.open_blocks.push(0);
                        self.add_branch(start)?;
                        Ok(i + 1)
                    }
                }
            }
            b'/' => {
                if let Some(branches) = self.open_blocks.pop() {
                    self.enclosing_branches -= 1 + branches;
                }
                Ok(i + 1)
            }
            b'^' => {
                self.else_branch(start)?;
                Ok(i + 1)
            }
            b'e' if self.starts_with(i, b"else") && !is_symbol_byte(self.at(i + 4)) => {
                self.else_branch(start)?;
                Ok(i + 4)
            }
            b'{' | b'&' => Ok(i + 1),
            _ => Ok(i),
        }
    }

    fn else_branch(&mut self, start: usize) -> Result<(), ScanError> {
        if let Some(branches) = self.open_blocks.last_mut() {
            *branches += 1;
            self.add_branch(start)?;
        }
        Ok(())
    }

    fn add_branch(&mut self, start: usize) -> Result<(), ScanError> {
        self.enclosing_branches += 1;
        if self.enclosing_branches > MAX_ENCLOSING_BRANCHES {
            return Err(error(
                start,
                format!(
                    "too many blocks and `else` branches (more than {MAX_ENCLOSING_BRANCHES} enclose this point)"
                ),
            ));
        }
        self.check_depth(start, 0)
    }

    fn check_depth(&self, offset: usize, parens: usize) -> Result<(), ScanError> {
        if self.open_blocks.len() + parens > self.max_depth {
            return Err(error(
                offset,
                format!(
                    "template is nested too deeply (more than {} levels of blocks and subexpressions)",
                    self.max_depth
                ),
            ));
        }
        Ok(())
    }

    /// Walks the expression part of a tag up to its closing `}}`, counting
    /// subexpression parentheses that are code rather than string content.
    fn code(&mut self, mut i: usize) -> Result<(), ScanError> {
        let mut parens = 0usize;
        while i < self.src.len() {
            match self.at(i) {
                b'}' if self.at(i + 1) == b'}' => {
                    self.pos = i + 2;
                    return Ok(());
                }
                b'"' | b'\'' => i = self.string_end(i),
                b'(' => {
                    parens += 1;
                    self.check_depth(i, parens)?;
                    i += 1;
                }
                b')' => {
                    parens = parens.saturating_sub(1);
                    i += 1;
                }
                b'[' => i = self.bracket_end(i)?,
                // `{{` inside a tag can never parse, so the parser will
                // report it; stop here rather than guess what follows.
                b'{' if self.at(i + 1) == b'{' => {
                    self.pos = i;
                    return Ok(());
                }
                b'{' => return Err(error(i, "object literals are not supported")),
                _ => i += 1,
            }
        }
        self.pos = self.src.len();
        Ok(())
    }

    fn string_end(&self, open: usize) -> usize {
        let quote = self.at(open);
        let mut i = open + 1;
        while i < self.src.len() {
            match self.at(i) {
                b'\\' => i += 2,
                b if b == quote => return i + 1,
                _ => i += 1,
            }
        }
        self.src.len()
    }

    /// `[` opens either a path key (raw text up to the first `]`) or an
    /// array literal. Both end at the first `]` unless the content holds
    /// quotes or brackets; those cases are rejected so that the scan and the
    /// parser can never disagree about where code resumes.
    fn bracket_end(&self, open: usize) -> Result<usize, ScanError> {
        let Some(close) = self.find(open + 1, b"]") else {
            return Ok(self.src.len());
        };
        let content = &self.src[open + 1..close];
        if content
            .iter()
            .any(|b| matches!(b, b'"' | b'\'' | b'[' | b'{'))
        {
            return Err(error(
                open,
                "quotes and brackets are not allowed inside `[...]` (array and object literals are not supported)",
            ));
        }
        Ok(close + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handlebars::template::{
        HelperTemplate, Parameter, Template as HbTemplate, TemplateElement,
    };

    fn tags(src: &str) -> Vec<usize> {
        scan(src, 64).expect("scan ok")
    }

    fn fails(src: &str) -> ScanError {
        scan(src, 64).expect_err("scan should fail")
    }

    #[test]
    fn records_tag_offsets_and_skips_escapes() {
        assert_eq!(tags("a {{b}} {{#if c}}d{{/if}}"), vec![2, 8, 18]);
        assert_eq!(tags(r"\{{x}} {{y}}"), vec![7]);
        assert_eq!(tags(r"\\{{x}}"), vec![2]);
        assert_eq!(tags(r"\{{{{x}}}}"), Vec::<usize>::new());
        assert_eq!(tags("{{!-- }} --}}{{x}}"), vec![0, 13]);
        assert_eq!(tags("{{! x }}{{y}}"), vec![0, 8]);
    }

    #[test]
    fn strings_and_keys_hide_brackets() {
        let deep_string = format!("{{{{f \"{}\" '}}}}'}}}}", "(".repeat(200));
        assert_eq!(tags(&deep_string), vec![0]);
        assert_eq!(tags("{{a.[we(ird] b}}"), vec![0]);
        assert_eq!(tags("{{f [1, 2]}}"), vec![0]);
    }

    #[test]
    fn rejects_unsupported_constructs() {
        assert!(fails("x {{> p}}").message.contains("partials"));
        assert!(
            fails("{{~ #> layout}}{{/layout}}")
                .message
                .contains("partials")
        );
        assert!(
            fails("{{#*inline \"x\"}}{{/inline}}")
                .message
                .contains("inline partials")
        );
        assert!(fails("{{*dec}}").message.contains("decorators"));
        assert_eq!(fails("ab{{{{raw}}}}{{{{/raw}}}}").offset, 2);
        assert!(
            fails("{{f {\"a\": 1}}}")
                .message
                .contains("object literals")
        );
        assert!(fails("{{f [\"a\"]}}").message.contains("array"));
        assert!(fails("{{a.[it's]}}").message.contains("quotes"));
        for lone in ["{{ '{{' }}", "{{\"x\"~}}", "{{{'x'}}}", "a {{~ 'x' }}"] {
            assert!(fails(lone).message.contains("cannot stand alone"), "{lone}");
        }
        assert_eq!(tags("{{concat '{{'}} {{f 'x' y}}"), vec![0, 16]);
    }

    /// Nesting depth as the handlebars parser sees it: blocks plus
    /// subexpressions, the quantity the scan must never under-count. An
    /// `{{else if}}` link is stored nested but is not a nesting level.
    fn parsed_depth(elements: &[TemplateElement]) -> usize {
        fn param_depth(p: &Parameter) -> usize {
            match p {
                Parameter::Subexpression(sub) => match sub.as_element() {
                    TemplateElement::Expression(ht) => 1 + helper_depth(ht),
                    _ => 1,
                },
                _ => 0,
            }
        }
        fn helper_depth(ht: &HelperTemplate) -> usize {
            let params = ht
                .params
                .iter()
                .chain(ht.hash.values())
                .chain(Some(&ht.name));
            params.map(param_depth).max().unwrap_or(0)
        }
        fn template_depth(t: Option<&HbTemplate>) -> usize {
            t.map_or(0, |t| parsed_depth(&t.elements))
        }
        fn link_depth(ht: &HelperTemplate) -> usize {
            let rest = match ht.inverse.as_ref() {
                Some(inv) if inv.mapping.is_empty() => match inv.elements.as_slice() {
                    [TemplateElement::HelperBlock(next)] => link_depth(next),
                    _ => template_depth(Some(inv)),
                },
                other => template_depth(other),
            };
            helper_depth(ht)
                .max(template_depth(ht.template.as_ref()))
                .max(rest)
        }
        elements
            .iter()
            .map(|e| match e {
                TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                    helper_depth(ht)
                }
                TemplateElement::HelperBlock(ht) => 1 + link_depth(ht),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// Generates near-valid templates: nested blocks and subexpressions whose
    /// strings, keys, comments and text hold brackets, quotes and braces.
    struct Generator(u64);

    impl Generator {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 16) as usize
        }

        fn pick<'p>(&mut self, items: &[&'p str]) -> &'p str {
            items[self.next() % items.len()]
        }

        fn expr(&mut self, depth: usize, out: &mut String) {
            const TRICKY: &[&str] = &["(", ")", "}}", "{{", "]", "[", " ", "x", "{", "}"];
            match self.next() % 6 {
                _ if depth == 0 => out.push('x'),
                0 => out.push_str(&format!("'{}\\''", self.pick(TRICKY))),
                1 => out.push_str(&format!("\"{}\\\"\"", self.pick(TRICKY))),
                2 => out.push_str(&format!("a.[{}]", self.pick(&["(", ")", "}}", " ", "x"]))),
                _ => {
                    out.push_str("(f ");
                    for _ in 0..1 + self.next() % 2 {
                        self.expr(depth - 1, out);
                        out.push(' ');
                    }
                    out.push(')');
                }
            }
        }

        fn template(&mut self, depth: usize, out: &mut String) {
            for _ in 0..1 + self.next() % 3 {
                match self.next() % 5 {
                    0 => out.push_str(self.pick(&["t", "\\{{x}}", "\\\\", "(", ")", "{", "}"])),
                    1 => out.push_str(self.pick(&["{{! ( }}", "{{!-- }} ( --}}", "{{!--)--}}"])),
                    2 if depth > 0 => {
                        out.push_str("{{#if ");
                        self.expr(depth - 1, out);
                        out.push_str("}}");
                        self.template(depth - 1, out);
                        if self.next().is_multiple_of(2) {
                            out.push_str("{{else if ");
                            self.expr(depth - 1, out);
                            out.push_str("}}");
                            self.template(depth - 1, out);
                        }
                        out.push_str("{{/if}}");
                    }
                    _ => {
                        out.push_str("{{f ");
                        self.expr(depth, out);
                        out.push_str("}}");
                    }
                }
            }
        }

        fn mutate(&mut self, source: &mut String) {
            if source.is_empty() || !self.next().is_multiple_of(3) {
                return;
            }
            let mut at = self.next() % source.len();
            while !source.is_char_boundary(at) {
                at -= 1;
            }
            let piece = self.pick(&["'", "\"", "\\", "]", "[", "{{", "}}", "(", ")"]);
            source.insert_str(at, piece);
        }
    }

    #[test]
    fn scan_never_undercounts_parser_nesting() {
        const LIMIT: usize = 3;
        let mut generator = Generator(0x2545_F491_4F6C_DD1D);
        let (mut accepted, mut rejected_deep) = (0, 0);
        for _ in 0..20_000 {
            let mut source = String::new();
            generator.template(5, &mut source);
            generator.mutate(&mut source);
            let Ok(parsed) = HbTemplate::compile(&source) else {
                continue;
            };
            let depth = parsed_depth(&parsed.elements);
            if scan(&source, LIMIT).is_ok() {
                accepted += 1;
                assert!(depth <= LIMIT, "{source:?} parses {depth} deep");
            } else if depth > LIMIT {
                rejected_deep += 1;
            }
        }
        assert!(
            accepted > 1000 && rejected_deep > 1000,
            "{accepted} / {rejected_deep}"
        );
    }

    #[test]
    fn rejects_deep_nesting() {
        let parens = format!("{{{{f {}x{}}}}}", "(f ".repeat(65), ")".repeat(65));
        assert!(fails(&parens).message.contains("nested too deeply"));
        let ok = format!("{{{{f {}x{}}}}}", "(f ".repeat(64), ")".repeat(64));
        assert_eq!(tags(&ok), vec![0]);
        let blocks = "{{#if a}}".repeat(65);
        assert_eq!(fails(&blocks).offset, 64 * 9);
        let sequential = "{{#if a}}{{/if}}".repeat(1000);
        assert_eq!(tags(&sequential).len(), 2000);
        let long_chain = format!("{{{{#if a}}}}{}{{{{/if}}}}", "{{else if b}}".repeat(511));
        assert_eq!(tags(&long_chain).len(), 513);
        let too_long = format!("{{{{#if a}}}}{}{{{{/if}}}}", "{{^}}{{ else }}".repeat(256));
        assert!(
            fails(&too_long)
                .message
                .contains("too many blocks and `else` branches")
        );
        let level = format!("{{{{#if a}}}}{}", "{{else if b}}".repeat(8));
        assert!(fails(&level.repeat(60)).message.contains("too many"));
        assert_eq!(tags(&level.repeat(56)).len(), 56 * 9);
        // `elsewhere` is a name, not an else tag.
        assert_eq!(tags(&"{{#if a}}{{elsewhere}}".repeat(60)).len(), 120);
        let unclosed = "{{f ".to_owned() + &"(".repeat(100_000);
        assert!(fails(&unclosed).message.contains("nested too deeply"));
    }
}
