struct Mailer;

impl Mailer {
    #[qtasks::task]
    async fn send(&self, to: String) -> String {
        to
    }
}

fn main() {}
