// `Depends<T>` of a type that does not implement `Dependency`.
use qtasks::prelude::*;

struct Cache;

#[qtasks::task]
async fn lookup(cache: Depends<Cache, scope::Worker>, key: String) -> String {
    let _ = cache;
    key
}

fn main() {}
