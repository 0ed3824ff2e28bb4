#[qtasks::task(unique = [order], concurrency = 2, concurrency_key = [account])]
async fn charge(order_id: u64, account_id: u64) -> u64 {
    order_id + account_id
}

fn main() {}
