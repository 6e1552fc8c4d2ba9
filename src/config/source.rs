//! Loaded config files and byte spans into them.

use std::path::{Path, PathBuf};

/// A byte range in one loaded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    /// Index into [`SourceMap`].
    pub file: u32,
    /// Start byte offset.
    pub start: u32,
    /// End byte offset (exclusive).
    pub end: u32,
}

impl Span {
    /// A span over `range` in `file`.
    pub fn new(file: u32, range: std::ops::Range<usize>) -> Self {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self { file, start: clamp(range.start), end: clamp(range.end.max(range.start)) }
    }
}

/// One loaded file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the config root, as shown to users.
    pub name: String,
    /// Absolute path.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// Every loaded file, addressed by [`Span::file`].
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// Add a file; returns its id.
    pub fn add(&mut self, root: &Path, path: PathBuf, text: String) -> u32 {
        let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        self.files.push(SourceFile { name, path, text });
        u32::try_from(self.files.len() - 1).expect("fewer than 4 billion config files")
    }

    /// The file with this id.
    pub fn file(&self, id: u32) -> &SourceFile {
        &self.files[id as usize]
    }

    /// All files.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// `file:line:col` of a span's start (1-based).
    pub fn location(&self, span: Span) -> String {
        let f = self.file(span.file);
        let start = (span.start as usize).min(f.text.len());
        let before = &f.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{col}", f.name)
    }
}
