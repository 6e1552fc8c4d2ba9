//! The one place that names concrete providers.

use std::collections::BTreeMap;
use std::sync::Arc;

use tend_provider::{KindSchema, Provider, ProviderConfig, ProviderError, ProviderFactory};

use crate::config::Config;

/// Known providers and their kind schemas.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn ProviderFactory>>,
    kinds: BTreeMap<&'static str, Vec<KindSchema>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.factories.keys().collect::<Vec<_>>())
            .field("kinds", &self.kinds.iter().map(|(p, k)| (p, k.len())).collect::<Vec<_>>())
            .finish()
    }
}

/// Configured providers for one run, by name.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

impl Registry {
    /// The providers compiled into this binary (see the cargo features).
    pub fn builtin() -> Self {
        #[allow(unused_mut)]
        let mut r = Self::default();
        #[cfg(feature = "host")]
        {
            r = r.with(tend_host::HostFactory);
        }
        #[cfg(feature = "ec2")]
        {
            r = r.with(tend_ec2::Ec2Factory);
        }
        #[cfg(feature = "kube")]
        {
            r = r.with(tend_kube::KubeFactory);
        }
        r
    }

    /// Add a provider.
    #[must_use]
    pub fn with(mut self, factory: impl ProviderFactory + 'static) -> Self {
        self.kinds.insert(factory.name(), factory.kinds());
        self.factories.insert(factory.name(), Arc::new(factory));
        self
    }

    /// Whether a provider of this name exists.
    pub fn has_provider(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// Provider names, sorted.
    pub fn provider_names(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// Kind names of one provider.
    pub fn kind_names(&self, provider: &str) -> Vec<&'static str> {
        self.kinds.get(provider).map(|k| k.iter().map(|s| s.kind).collect()).unwrap_or_default()
    }

    /// The settings `[providers.NAME]` may hold; `None` for an unknown provider.
    pub fn settings(&self, provider: &str) -> Option<Vec<tend_provider::FieldSchema>> {
        self.factories.get(provider).map(|f| f.settings())
    }

    /// The schema of `provider.kind`.
    pub fn kind(&self, provider: &str, kind: &str) -> Option<&KindSchema> {
        self.kinds.get(provider)?.iter().find(|k| k.kind == kind)
    }

    /// Configure every provider the config uses.
    pub fn configure(&self, config: &Config) -> Result<Providers, (String, ProviderError)> {
        self.configure_where(config, |name| config.resources.keys().any(|a| &*a.provider == name) || config.provider_settings.contains_key(name))
    }

    /// Configure every registered provider (for applying saved plans and deleting orphans whose
    /// provider the config no longer uses).
    pub fn configure_all(&self, config: &Config) -> Result<Providers, (String, ProviderError)> {
        self.configure_where(config, |_| true)
    }

    fn configure_where(&self, config: &Config, wanted: impl Fn(&str) -> bool) -> Result<Providers, (String, ProviderError)> {
        let mut out = Providers::new();
        for (name, factory) in self.factories.iter().filter(|(name, _)| wanted(name)) {
            let settings = config.provider_settings.get(*name).cloned().unwrap_or_default();
            let p = factory
                .configure(ProviderConfig { settings, config_root: config.root.clone(), project: config.project.name.clone() })
                .map_err(|e| ((*name).to_string(), e))?;
            out.insert((*name).to_string(), Arc::from(p));
        }
        Ok(out)
    }
}
