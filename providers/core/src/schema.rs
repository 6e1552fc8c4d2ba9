//! Resource kind schemas: which fields a kind has, their types, and what a change to each does.

/// The type of a config field, checked by the engine on literal values before any provider call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// A UTF-8 string.
    String,
    /// A 64-bit integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// A list whose elements have the given type.
    List(Box<FieldType>),
    /// A table with string keys whose values have the given type.
    Map(Box<FieldType>),
    /// A list of resource addresses. Each creates a dependency edge, and the provider is told
    /// which of them change in the same plan (used for `on_change` triggers).
    AddressList,
    /// Any value; the provider validates it.
    Any,
}

impl FieldType {
    /// A short name for error messages: `string`, `list of string`, ...
    pub fn describe(&self) -> String {
        match self {
            Self::String => "string".into(),
            Self::Int => "integer".into(),
            Self::Bool => "boolean".into(),
            Self::List(t) => format!("list of {}", t.describe()),
            Self::Map(t) => format!("table of {}", t.describe()),
            Self::AddressList => "list of resource addresses".into(),
            Self::Any => "any value".into(),
        }
    }
}

/// What a change to a field does to the existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// The object is updated where it stands.
    InPlace,
    /// The object must be replaced (e.g. an EC2 instance's AMI, a file's path).
    Replace,
}

/// Whether a field is set by the user, reported by the provider, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Config only.
    Input,
    /// Known only after apply (ids, addresses, hashes); referencable, never configurable.
    Output,
}

/// What a field's value claims on the instance's target, so two instances cannot fight over it
/// (a host path two resources write). The engine compares the planned values, normalised as
/// paths (`./`, `..`, repeated and trailing `/`), per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The instance owns the whole object (a file's content, a directory): no other instance
    /// may claim it.
    Exclusive,
    /// The instance manages part of it (a line in a file): others may share it, but no
    /// exclusive claim may be made on it.
    Shared,
}

/// One field of a resource kind.
#[derive(Debug, Clone)]
pub struct FieldSchema {
    /// Field name as written in config.
    pub name: &'static str,
    /// Its type.
    pub ty: FieldType,
    /// Whether config must set it.
    pub required: bool,
    /// What a change does.
    pub update: UpdateMode,
    /// Input or output.
    pub role: Role,
    /// One line for docs and `--help`-style listings.
    pub doc: &'static str,
    /// What the value claims on the target, if anything.
    pub claim: Option<Claim>,
}

impl FieldSchema {
    /// An optional, in-place input field.
    pub const fn input(name: &'static str, ty: FieldType, doc: &'static str) -> Self {
        Self { name, ty, required: false, update: UpdateMode::InPlace, role: Role::Input, doc, claim: None }
    }

    /// An output field.
    pub const fn output(name: &'static str, ty: FieldType, doc: &'static str) -> Self {
        Self { name, ty, required: false, update: UpdateMode::InPlace, role: Role::Output, doc, claim: None }
    }

    /// Mark as required.
    #[must_use]
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Mark the value as a claim on the target (see [`Claim`]).
    #[must_use]
    pub const fn claims(mut self, claim: Claim) -> Self {
        self.claim = Some(claim);
        self
    }

    /// Mark as forcing replacement when changed.
    #[must_use]
    pub const fn forces_replacement(mut self) -> Self {
        self.update = UpdateMode::Replace;
        self
    }
}

/// The schema of one resource kind, e.g. `host.file`.
#[derive(Debug, Clone)]
pub struct KindSchema {
    /// Kind name, e.g. `file`.
    pub kind: &'static str,
    /// One line describing the kind.
    pub doc: &'static str,
    /// Whether other resources are placed on resources of this kind (hosts): only these are
    /// passed to [`Provider::expand`](crate::Provider::expand) as siblings.
    pub target: bool,
    /// Input and output fields.
    pub fields: Vec<FieldSchema>,
    /// How long the engine waits for an instance of this kind to become ready after its apply
    /// (see [`Provider::health`](crate::Provider::health)) when the resource sets no `timeout`;
    /// `None`: the engine's default, [`DEFAULT_TIMEOUT`].
    pub timeout: Option<std::time::Duration>,
    /// Applying it runs something (a command) rather than making an object: plans say "will
    /// run", applies "ran".
    pub runs: bool,
}

/// How long the engine waits for readiness when neither the resource nor its kind says.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_mins(5);

impl KindSchema {
    /// The field with this name.
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Names of the input fields, for suggestions.
    pub fn input_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields.iter().filter(|f| f.role == Role::Input).map(|f| f.name)
    }
}
