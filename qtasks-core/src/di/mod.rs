//! Dependency injection: task parameters built from the running task's context instead of
//! decoded from its arguments.
//!
//! - `extract.rs`: [`FromTaskContext`](crate::FromTaskContext), the extractor trait (as axum's
//!   `FromRequestParts`), and the built-in extractors' impls;
//! - `scopes.rs`: the scope types ([`scope`](crate::scope)) and the scope instances that keep
//!   created values;
//! - `depends.rs`: [`Depends<T, S>`](crate::Depends) and [`Dependency`](crate::Dependency);
//! - `state.rs`: [`State<T>`](crate::State) and [`KvState<V>`](crate::KvState).

pub(crate) mod depends;
pub(crate) mod extract;
pub(crate) mod scopes;
pub(crate) mod state;
