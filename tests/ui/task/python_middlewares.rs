struct Audit;
impl qtasks::TaskMiddleware for Audit {}

#[qtasks::task(middlewares = [Audit])]
async fn with_mw() {}

fn main() {}
