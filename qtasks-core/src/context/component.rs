//! [`Component`]: the app's components by name, as [`TaskContext::get_component`](crate::TaskContext::get_component) returns them.

use std::sync::Arc;

use crate::app::config::Config;
use crate::app::handle::App;
use crate::backend::{Broker, GlobalConfig, Storage};
use crate::worker::scope::WorkerRef;

/// A component of the app, by name ([`TaskContext::get_component`]).
#[derive(Clone)]
#[non_exhaustive]
pub enum Component {
    /// The queue (`"broker"`).
    Broker(Arc<dyn Broker>),
    /// Records and results (`"storage"`).
    Storage(Arc<dyn Storage>),
    /// The shared key-value store (`"global_config"`).
    GlobalConfig(Arc<dyn GlobalConfig>),
    /// The worker running the task (`"worker"`).
    Worker(WorkerRef),
    /// The app's settings (`"config"`).
    Config(Config),
    /// The app itself (`"app"`).
    App(App),
}

impl Component {
    /// The names [`TaskContext::get_component`] knows.
    pub const NAMES: &'static [&'static str] = &[
        "broker",
        "storage",
        "global_config",
        "worker",
        "config",
        "app",
    ];
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Component::Broker(_) => f.write_str("Component::Broker"),
            Component::Storage(_) => f.write_str("Component::Storage"),
            Component::GlobalConfig(_) => f.write_str("Component::GlobalConfig"),
            Component::Worker(w) => write!(f, "Component::Worker({})", w.id()),
            Component::Config(_) => f.write_str("Component::Config"),
            Component::App(a) => write!(f, "Component::App({})", a.name()),
        }
    }
}
