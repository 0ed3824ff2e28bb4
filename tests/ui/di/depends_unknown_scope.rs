// `Depends<T, S>` whose `S` is not one of the scopes.
use qtasks::prelude::*;

struct Db;

impl Dependency for Db {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        Ok(Db)
    }
}

struct Request;

#[qtasks::task]
async fn query(db: Depends<Db, Request>) {
    let _ = db;
}

fn main() {}
