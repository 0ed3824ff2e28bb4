static ROUTER: qtasks::Router = qtasks::Router::new("r");

#[qtasks::shared_task(router = ROUTER)]
fn shared() -> u8 {
    1
}

fn main() {}
