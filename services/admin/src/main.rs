//! `esr` for this workspace: the operators' tool, operating the social module.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    esr_admin::main_with(esr_app::Modules::from(vec![esr_app::social::module()])).await
}
