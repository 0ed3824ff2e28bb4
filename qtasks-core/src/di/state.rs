//! Shared state: typed [`State<T>`] handed to the app builder, and the key-value
//! [`KvState<V>`] (the seed's `AsyncState`: get, get_all, set, update, delete, clear).

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::app::handle::App;
use crate::context::TaskContext;
use crate::di::extract::FromTaskContext;
use crate::error::{Missing, TaskError, TaskErrorKind};

/// Typed state shared by every task of an app: given once with
/// `App::builder().state(Config { .. })`, taken by tasks as `cfg: State<Config>`.
///
/// Dereferences to `T`; cloning shares it. A task that asks for a `State<T>` the app does not
/// provide makes `App::build()` fail, naming the task and `T`. For state that tasks change,
/// put interior mutability inside `T` (an atomic, a mutex) or use [`KvState`].
pub struct State<T>(Arc<T>);

impl<T> State<T> {
    /// The shared value.
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T> std::ops::Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&self.0).finish()
    }
}

impl<T: Send + Sync + 'static> FromTaskContext for State<T> {
    async fn from_task_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        ctx.app()
            .state::<T>()
            .ok_or_else(|| TaskError::new(TaskErrorKind::Extractor(missing_state::<T>(ctx.app()))))
    }

    fn check(app: &App) -> Vec<Missing> {
        match app.state::<T>() {
            Some(_) => Vec::new(),
            None => vec![Missing::state::<T>()],
        }
    }
}

fn missing_state<T>(app: &App) -> String {
    let ty = std::any::type_name::<T>();
    format!(
        "it asks for `State<{ty}>`, but app {:?} provides no `{ty}`: add `.state(..)` with a `{ty}` to the app builder",
        app.name()
    )
}

/// The typed values given to the app builder, by type.
#[derive(Default)]
pub(crate) struct StateMap(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl StateMap {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<State<T>> {
        let value = self.0.get(&TypeId::of::<T>())?.clone();
        value.downcast::<T>().ok().map(State)
    }
}

/// A key-value store shared by the tasks of one app process (the seed's `AsyncState`):
/// one store per value type `V`, safe to use from many tasks at once, sync or async.
///
/// Take it as a task parameter (`kv: KvState<u64>`) or from the app (`app.kv_state::<u64>()`).
/// Every method takes the store's lock for that one operation only, so no lock is ever held
/// across an `.await`; [`KvState::modify`] is the atomic read-modify-write. For two stores
/// with the same value type, wrap the values in distinct newtypes. The store lives in this
/// process; for state shared across processes use the backend's `GlobalConfig`.
pub struct KvState<V = serde_json::Value> {
    map: Arc<RwLock<BTreeMap<String, V>>>,
}

impl<V> Clone for KvState<V> {
    fn clone(&self) -> Self {
        KvState {
            map: self.map.clone(),
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for KvState<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.map.read().iter()).finish()
    }
}

impl<V: Clone + Send + Sync + 'static> KvState<V> {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<V> {
        self.map.read().get(key).cloned()
    }

    /// Every key and value.
    pub fn get_all(&self) -> BTreeMap<String, V> {
        self.map.read().clone()
    }

    /// Sets `key`; returns the previous value.
    pub fn set(&self, key: impl Into<String>, value: V) -> Option<V> {
        self.map.write().insert(key.into(), value)
    }

    /// Sets several keys in one step (no task sees half of them); returns the whole state
    /// afterwards.
    pub fn update<K: Into<String>>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> BTreeMap<String, V> {
        let mut map = self.map.write();
        for (key, value) in entries {
            map.insert(key.into(), value);
        }
        map.clone()
    }

    /// Replaces the value under `key` with `f(current)`, atomically (concurrent calls never
    /// lose an update); returns the new value.
    pub fn modify(&self, key: impl Into<String>, f: impl FnOnce(Option<&V>) -> V) -> V {
        let mut map = self.map.write();
        let key = key.into();
        let value = f(map.get(&key));
        map.insert(key, value.clone());
        value
    }

    /// Removes `key`; returns its value.
    pub fn delete(&self, key: &str) -> Option<V> {
        self.map.write().remove(key)
    }

    /// Removes every key.
    pub fn clear(&self) {
        self.map.write().clear()
    }
}

impl<V: Clone + Send + Sync + 'static> FromTaskContext for KvState<V> {
    async fn from_task_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        Ok(ctx.app().kv_state::<V>())
    }
}

/// The key-value stores of one app, by value type, created on first use.
#[derive(Default)]
pub(crate) struct KvStores(Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl KvStores {
    pub(crate) fn get<V: Send + Sync + 'static>(&self) -> KvState<V> {
        let erased = self
            .0
            .lock()
            .entry(TypeId::of::<V>())
            .or_insert_with(|| Arc::new(RwLock::new(BTreeMap::<String, V>::new())))
            .clone();
        match erased.downcast::<RwLock<BTreeMap<String, V>>>() {
            Ok(map) => KvState { map },
            // Unreachable: the entry for `V` always holds a map of `V`.
            Err(_) => KvState {
                map: Arc::new(RwLock::new(BTreeMap::new())),
            },
        }
    }
}
