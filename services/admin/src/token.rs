//! `esr token`: a bearer token signed by a local private key, for development and tests.
//! A deployment verifies tokens from its identity provider; this only makes testing the
//! services by hand possible (`openssl genpkey -algorithm ed25519 -out dev.pem`, then
//! `AUTH_JWT_KEY_FILE` set to its public half).

use std::process::ExitCode;
use std::time::Duration;

use esr_app::auth::dev::Signer;

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The subject: the user id the token acts as.
    #[arg(long)]
    sub: String,
    /// A PEM private key (PKCS#8): Ed25519, P-256 or RSA.
    #[arg(long)]
    key: std::path::PathBuf,
    /// A role (repeat for more); `admin` may act on anyone.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// The `iss` claim (match the services' AUTH_ISSUER).
    #[arg(long)]
    iss: Option<String>,
    /// The `aud` claim (match the services' AUTH_AUDIENCE).
    #[arg(long)]
    aud: Option<String>,
    /// The `kid` header (for a key published in a JWKS).
    #[arg(long)]
    kid: Option<String>,
    /// Seconds until it expires.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

pub fn run(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let pem = std::fs::read(&args.key)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.key.display()))?;
    let mut signer =
        Signer::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", args.key.display()))?;
    if let Some(kid) = &args.kid {
        signer = signer.with_kid(kid);
    }
    let token = signer
        .token(
            &args.sub,
            &args.roles,
            Duration::from_secs(args.ttl),
            args.iss.as_deref(),
            args.aud.as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
