#[qtasks::task(concurrency_key = [account_id], rate_limit_key = [account_id], unique_for = 60)]
async fn sync_account(account_id: u64) -> u64 {
    account_id
}

fn main() {}
