//! The skill registry, the service catalogue and the adapter setup catalogue (spec
//! catalogue-and-search.md §1–§7). The catalogue is data, loaded once at start-up and read-only
//! through the API; the only thing the API writes is skill config.

pub mod load;
pub mod model;
pub(crate) mod routes;
pub mod service;
mod store;

use std::collections::{BTreeMap, HashMap};

pub use routes::{agent_optional_routes, routes};

use model::{AdapterSetup, Service, ServiceType, Skill, SkillManifest};

/// The loaded catalogue: every entry by key, in key order.
#[derive(Debug, Default)]
pub struct Catalog {
    skills: BTreeMap<String, Skill>,
    manifests: BTreeMap<String, SkillManifest>,
    /// In id order.
    services: Vec<Service>,
    /// Positions in `services`, by id.
    service_ids: HashMap<String, usize>,
    adapters: BTreeMap<String, AdapterSetup>,
    /// Positions in `services` by type, in id order: search and discovery only look at one
    /// type.
    by_type: HashMap<ServiceType, Vec<usize>>,
}

impl Catalog {
    pub fn new(
        skills: Vec<Skill>,
        manifests: Vec<SkillManifest>,
        services: Vec<Service>,
        adapters: Vec<AdapterSetup>,
    ) -> Catalog {
        let mut services = services;
        services.sort_by(|a, b| a.id.cmp(&b.id));
        let mut by_type: HashMap<ServiceType, Vec<usize>> = HashMap::new();
        let mut service_ids = HashMap::with_capacity(services.len());
        for (at, service) in services.iter().enumerate() {
            by_type.entry(service.service_type).or_default().push(at);
            service_ids.insert(service.id.clone(), at);
        }
        Catalog {
            skills: skills.into_iter().map(|s| (s.key.clone(), s)).collect(),
            manifests: manifests.into_iter().map(|m| (m.key.clone(), m)).collect(),
            services,
            service_ids,
            adapters: adapters
                .into_iter()
                .map(|a| (a.provider_key.clone(), a))
                .collect(),
            by_type,
        }
    }

    pub fn skill(&self, key: &str) -> Option<&Skill> {
        self.skills.get(key)
    }

    pub fn skills(&self) -> impl Iterator<Item = &Skill> {
        self.skills.values()
    }

    pub fn manifest(&self, key: &str) -> Option<&SkillManifest> {
        self.manifests.get(key)
    }

    pub fn service(&self, id: &str) -> Option<&Service> {
        self.service_ids.get(id).map(|at| &self.services[*at])
    }

    /// Every service, in id order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter()
    }

    /// The services of one type, in id order.
    pub fn services_of_type(&self, service_type: ServiceType) -> impl Iterator<Item = &Service> {
        self.by_type
            .get(&service_type)
            .into_iter()
            .flatten()
            .map(|at| &self.services[*at])
    }

    pub fn adapter(&self, provider_key: &str) -> Option<&AdapterSetup> {
        self.adapters.get(provider_key)
    }

    pub fn adapters(&self) -> impl Iterator<Item = &AdapterSetup> {
        self.adapters.values()
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Whether every skill has its manifest (readiness check `skills`; loading enforces it).
    pub fn skills_have_manifests(&self) -> bool {
        self.skills
            .keys()
            .all(|key| self.manifests.contains_key(key))
    }
}
