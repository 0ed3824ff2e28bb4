//! [`Router`]: a named group of tasks that an app includes explicitly.

/// A group of tasks declared in a module and included into apps that want them.
///
/// ```ignore
/// pub static ROUTER: qtasks::Router = qtasks::Router::new("billing");
///
/// #[qtasks::task(router = ROUTER)]
/// async fn charge(cents: u64) -> u64 { cents }
///
/// let app = App::builder().include_router(&billing::ROUTER).build()?;
/// ```
///
/// Tasks attached to a router are absent from apps that do not include it. Routers are
/// compared by identity (the address of the `static`), never by name.
#[derive(Debug)]
pub struct Router {
    name: &'static str,
}

impl Router {
    /// A router with a name (used in messages and `inspect`).
    pub const fn new(name: &'static str) -> Self {
        Router { name }
    }

    /// The router's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether `self` and `other` are the same router.
    pub fn is(&self, other: &Router) -> bool {
        std::ptr::eq(self, other)
    }
}
