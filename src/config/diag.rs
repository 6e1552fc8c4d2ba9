//! Config diagnostics: a summary, a hint, and labelled spans, rendered by miette.

use std::fmt;

use super::source::{SourceMap, Span};

/// A labelled location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What is there.
    pub message: String,
}

/// One problem found in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// One line: what is wrong (lowercase).
    pub summary: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// Locations; the first is the primary one.
    pub labels: Vec<Label>,
}

impl Diagnostic {
    /// A diagnostic pointing at one span.
    pub fn at(span: Span, summary: impl Into<String>, label: impl Into<String>) -> Self {
        Self { summary: summary.into(), hint: None, labels: vec![Label { span, message: label.into() }] }
    }

    /// A diagnostic without a location.
    pub fn global(summary: impl Into<String>) -> Self {
        Self { summary: summary.into(), hint: None, labels: Vec::new() }
    }

    /// Attach a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        let hint = hint.into();
        if !hint.is_empty() {
            self.hint = Some(hint);
        }
        self
    }

    /// Add another labelled location.
    #[must_use]
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label { span, message: message.into() });
        self
    }
}

/// All problems found; loading fails if there is any.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    /// The problems, in the order found.
    pub items: Vec<Diagnostic>,
    /// The files they point into.
    pub sources: SourceMap,
}

impl Diagnostics {
    /// Render as plain text (no colour), one block per diagnostic, with `file:line:col`.
    pub fn render(&self, width: usize, color: bool) -> String {
        let handler = if color {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode())
        } else {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        }
        .with_width(width)
        .with_links(false);
        let mut out = String::new();
        for d in &self.items {
            for part in RenderPart::split(d, &self.sources) {
                let _ = handler.render_report(&mut out, &part);
            }
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            match d.labels.first() {
                Some(l) => writeln!(f, "{}: {}", self.sources.location(l.span), d.summary)?,
                None => writeln!(f, "{}", d.summary)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// One renderable block: a diagnostic's labels that fall in one file (miette shows one source
/// per report, so labels in other files become follow-up blocks).
#[derive(Debug)]
struct RenderPart {
    summary: String,
    hint: Option<String>,
    source: Option<miette::NamedSource<String>>,
    labels: Vec<miette::LabeledSpan>,
}

impl RenderPart {
    fn split(d: &Diagnostic, sources: &SourceMap) -> Vec<Self> {
        let mut files: Vec<u32> = Vec::new();
        for l in &d.labels {
            if !files.contains(&l.span.file) {
                files.push(l.span.file);
            }
        }
        if files.is_empty() {
            return vec![Self { summary: d.summary.clone(), hint: d.hint.clone(), source: None, labels: vec![] }];
        }
        let last = files.len() - 1;
        files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                let f = sources.file(*file);
                let labels = d
                    .labels
                    .iter()
                    .filter(|l| l.span.file == *file)
                    .map(|l| {
                        // A label past the last visible character (an error at the end of the
                        // file) points at that character.
                        let last = f.text.trim_end().len().saturating_sub(1);
                        let start = (l.span.start as usize).min(last);
                        let len = (l.span.end - l.span.start) as usize;
                        miette::LabeledSpan::new(Some(l.message.clone()), start, len.min(f.text.len() - start))
                    })
                    .collect();
                Self {
                    summary: if i == 0 { d.summary.clone() } else { format!("(continued) {}", d.summary) },
                    hint: if i == last { d.hint.clone() } else { None },
                    source: Some(miette::NamedSource::new(f.name.clone(), f.text.clone())),
                    labels,
                }
            })
            .collect()
    }
}

impl fmt::Display for RenderPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

impl std::error::Error for RenderPart {}

impl miette::Diagnostic for RenderPart {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.hint.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.labels.is_empty() { None } else { Some(Box::new(self.labels.iter().cloned())) }
    }
}
