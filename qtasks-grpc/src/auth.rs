//! Who may change what: `AddTask` and `Cancel` need the server's token as
//! `authorization: Bearer <token>` metadata; reads (`GetTask`, `WaitTask`, `ListTasks`) are open
//! to whoever reaches the address.

use tonic::metadata::MetadataMap;
use tonic::Status;

/// The token changing calls need; `None`: the program authenticates with its own layer.
#[derive(Clone, Default)]
pub(crate) struct Access {
    pub(crate) token: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// A random token: 32 hex digits from the operating system's random source (through uuid v4).
pub(crate) fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Access {
    /// Lets a changing call `method` through, or refuses it with `UNAUTHENTICATED` and a message
    /// saying what to send.
    pub(crate) fn check(&self, metadata: &MetadataMap, method: &str) -> Result<(), Status> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if same(given.trim().as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => {
                tracing::debug!(method, "gRPC call refused: wrong token");
                Err(Status::unauthenticated(format!(
                    "{method} changes tasks and needs the server's token: the token in the \
                     `authorization` metadata is not it; send `authorization: Bearer <token>` with \
                     the token the server printed at start (or QTASKS_GRPC_TOKEN)"
                )))
            }
            None => {
                tracing::debug!(method, "gRPC call refused: no token");
                Err(Status::unauthenticated(format!(
                    "{method} changes tasks and needs the server's token: send the metadata \
                     `authorization: Bearer <token>` with the token the server printed at start \
                     (or QTASKS_GRPC_TOKEN)"
                )))
            }
        }
    }
}
