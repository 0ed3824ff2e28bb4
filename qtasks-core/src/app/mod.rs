//! The app: the handle every layer carries ([`App`](crate::App), `handle.rs`), what it holds
//! (`inner.rs`), the ambient app that free calls go to (`ambient.rs`), enqueueing and reading
//! tasks (`enqueue.rs`), running it (`lifecycle.rs`, with the [`Worker`](crate::component::Worker)
//! and [`Starter`](crate::component::Starter) components of `component.rs`), its settings
//! (`config.rs`) and its builder (`builder.rs`).
//!
//! The handle is at the bottom of the crate's layers; the app's methods are in the files above
//! it, each next to the concept it serves.

pub(crate) mod ambient;
pub(crate) mod builder;
pub(crate) mod component;
pub(crate) mod config;
pub(crate) mod enqueue;
pub(crate) mod handle;
pub(crate) mod inner;
pub(crate) mod lifecycle;
