//! Evaluating config expressions against what is known about other resources.

use std::collections::{BTreeMap, HashMap};

use tend_provider::{Attributes, ResourceAddr, Value};

use crate::config::{Expr, Part, Reference, SecretRef};

/// A reference that cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The reference matches several instances.
    #[error("`${{{reference}}}` is ambiguous: `{resource}` has instances {}; name one, e.g. ${{{}.{field}}}", .candidates.join(", "), .candidates[0])]
    Ambiguous {
        /// The reference as written.
        reference: String,
        /// The resource referred to.
        resource: String,
        /// The field referred to.
        field: String,
        /// Matching instances.
        candidates: Vec<String>,
    },
    /// The reference matches no instance.
    #[error("`${{{0}}}` refers to a resource with no instances")]
    NoInstance(String),
    /// `${each.key}` on a resource with a single, unkeyed instance.
    #[error("`${{each.key}}` is used in `{0}`, which is not placed on hosts, so it has no key")]
    NoEachKey(String),
    /// The reference goes past what the value holds (a missing key).
    #[error("`${{{0}}}` goes past what the value holds: there is no such key")]
    NoSuchPath(String),
    /// A secret could not be read.
    #[error(transparent)]
    Secret(Box<crate::secrets::SecretError>),
}

/// Resolves references to instances and looks up their known values.
pub struct Resolver<'a> {
    /// Decrypted secrets (`${secret...}`).
    pub secrets: &'a crate::secrets::Secrets,
    /// Instances of each configured resource.
    pub instances: &'a BTreeMap<ResourceAddr, Vec<ResourceAddr>>,
    /// Known attributes of each instance (config ∪ planned or applied attributes).
    pub known: &'a HashMap<ResourceAddr, std::sync::Arc<Attributes>>,
    /// Whether every producer has been applied, so a missing attribute is null, not unknown.
    pub final_values: bool,
}

impl Resolver<'_> {
    fn lookup(&self, referrer: &ResourceAddr, r: &Reference) -> Result<Value, EvalError> {
        let inst = if r.addr.key.is_some() {
            r.addr.clone()
        } else {
            let all = self.instances.get(&r.addr.base()).map(Vec::as_slice).unwrap_or_default();
            match all.iter().find(|a| a.key.is_some() && a.key == referrer.key) {
                Some(same) => same.clone(),
                None => match all {
                    [one] => one.clone(),
                    [] => return Err(EvalError::NoInstance(r.to_string())),
                    many => {
                        return Err(EvalError::Ambiguous {
                            reference: r.to_string(),
                            resource: r.addr.to_string(),
                            field: r.field.clone(),
                            candidates: many.iter().map(ToString::to_string).collect(),
                        });
                    }
                },
            }
        };
        let missing = if self.final_values { Value::Null } else { Value::Unknown };
        let Some(attrs) = self.known.get(&inst) else { return Ok(missing) };
        let Some(v) = attrs.get(&r.field) else { return Ok(missing) };
        // A known value without what the reference asks for is an error, never an empty string.
        v.get_path(&r.path).ok_or_else(|| EvalError::NoSuchPath(r.to_string()))
    }

    fn secret(&self, r: &SecretRef) -> Result<Value, EvalError> {
        self.secrets.get(&r.name, &r.path).map_err(|e| EvalError::Secret(Box::new(e)))
    }

    /// Evaluate one expression for `referrer`.
    pub fn eval(&self, referrer: &ResourceAddr, expr: &Expr) -> Result<Value, EvalError> {
        Ok(match expr {
            Expr::Literal(v) => v.clone(),
            Expr::List(items) => Value::List(items.iter().map(|e| self.eval(referrer, e)).collect::<Result<_, _>>()?),
            Expr::Map(m) => Value::Map(m.iter().map(|(k, e)| Ok((k.clone(), self.eval(referrer, e)?))).collect::<Result<_, _>>()?),
            Expr::Template(parts) => {
                match parts.as_slice() {
                    [Part::Ref(r)] => return self.lookup(referrer, r),
                    [Part::Secret(r)] => return self.secret(r),
                    [Part::EachKey] => return each_key(referrer).map(Value::from),
                    _ => {}
                }
                let mut s = zeroize::Zeroizing::new(String::new());
                let mut sensitive = false;
                for p in parts {
                    let v = match p {
                        Part::Lit(l) => {
                            s.push_str(l);
                            continue;
                        }
                        Part::Ref(r) => self.lookup(referrer, r)?,
                        Part::Secret(r) => self.secret(r)?,
                        Part::EachKey => Value::from(each_key(referrer)?),
                    };
                    match v {
                        Value::Unknown => return Ok(Value::Unknown),
                        Value::Redacted | Value::Fingerprint(_) => return Ok(Value::Redacted),
                        v => {
                            sensitive |= v.is_sensitive();
                            s.push_str(&v.reveal().to_template_string());
                        }
                    }
                }
                let s = Value::from(std::mem::take(&mut *s));
                if sensitive { s.sensitive() } else { s }
            }
        })
    }
}

fn each_key(referrer: &ResourceAddr) -> Result<String, EvalError> {
    referrer.key.as_deref().map(str::to_string).ok_or_else(|| EvalError::NoEachKey(referrer.to_string()))
}

/// Evaluate every field of a resource.
pub fn eval_fields(resolver: &Resolver<'_>, referrer: &ResourceAddr, exprs: &tend_provider::Map<Expr>) -> Result<Attributes, EvalError> {
    exprs.iter().map(|(k, e)| Ok((k.clone(), resolver.eval(referrer, e)?))).collect()
}
