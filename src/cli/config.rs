//! The configuration shared by the commands: logs, store knobs, the `http` step's network
//! policy, email, API keys and secrets. Each setting is a flag with an environment variable
//! (`--sqlite-sync` / `FLOWD_SQLITE_SYNC`; the flag wins), parsed and validated once at start
//! into a [`Config`] that `main` hands down to the command, which passes the parts it needs on
//! (to [`Engine::open`](crate::engine::Engine::open) through [`EngineConfig`]). A command's own
//! settings (database URL, listen address, folders) stay flags of that command.
//!
//! This is the one module that reads the process environment itself: `FLOWD_SECRET_<NAME>`
//! variables have no fixed names, so they are found by going through the environment, here.
//! Everything else arrives through clap, which reads each flag's variable while parsing.
//! Modules keep their typed settings and the parsers that make them ([`StoreOptions`],
//! [`NetPolicy`], [`Mailer`]); this module gives them the values by variable name, so their
//! messages name the variable that is wrong.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use url::{Host, Url};

use crate::engine::EngineConfig;
use crate::engine::auth::{ApiKeys, MIN_KEY_LEN};
use crate::engine::secrets::MasterKeySource;
use crate::flow::validate::Options;
use crate::outbound::guard::{NetPolicy, PolicyError};
use crate::secrets::cipher::{KeyError, MasterKey};
use crate::secrets::{ENV_PREFIX, Secrets};
use crate::step::notify::email::{EmailError, Mailer};
use crate::store::{StoreError, StoreOptions};

/// The settings as given, by flag or environment variable; [`Config::parse`] checks them.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Configuration (flag or environment variable, for every command)")]
pub struct ConfigArgs {
    /// Log lines as `text` for people or `json` for log collectors [default: text].
    #[arg(
        long,
        env = "FLOWD_LOG_FORMAT",
        global = true,
        value_name = "text|json"
    )]
    log_format: Option<String>,
    /// Which log lines to write, in tracing's filter syntax: `debug`, `info,flowd=debug`
    /// [default: info; warn for `run` and `export`].
    #[arg(long, env = "RUST_LOG", global = true, value_name = "FILTER")]
    log_filter: Option<String>,
    /// SQLite durability: `normal`, or `full` for an fsync per commit that survives power cuts
    /// [default: normal].
    #[arg(
        long,
        env = "FLOWD_SQLITE_SYNC",
        global = true,
        value_name = "normal|full"
    )]
    sqlite_sync: Option<String>,
    /// Connections of the PostgreSQL pool, and of the SQLite read pool [default: 10].
    #[arg(
        long,
        env = "FLOWD_DATABASE_MAX_CONNECTIONS",
        global = true,
        value_name = "N"
    )]
    database_max_connections: Option<String>,
    /// Address ranges the http step must not reach, besides the cloud-metadata and link-local
    /// ones it never reaches: CIDRs or addresses, comma-separated.
    #[arg(long, env = "FLOWD_HTTP_DENY", global = true, value_name = "RANGES")]
    http_deny: Option<String>,
    /// When set, the only address ranges the http step may reach (deny still wins).
    #[arg(long, env = "FLOWD_HTTP_ALLOW", global = true, value_name = "RANGES")]
    http_allow: Option<String>,
    /// Refuse plain http:// URLs, when flows are validated and when a step's URL renders:
    /// true, 1, yes, on or false, 0, no, off (any case). The bare flag means true.
    #[arg(
        long,
        env = "FLOWD_HTTP_REQUIRE_HTTPS",
        global = true,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    http_require_https: Option<String>,
    /// SMTP server of the notify step's email channel: `smtp://host:port`,
    /// `smtp://user:pass@host:587?tls=required` or `smtps://user:pass@host` [default: none,
    /// email steps fail].
    #[arg(
        long,
        env = "FLOWD_SMTP_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    smtp_url: Option<String>,
    /// Sender of emails [default: flowd <flowd@localhost>].
    #[arg(long, env = "FLOWD_SMTP_FROM", global = true, value_name = "MAILBOX")]
    smtp_from: Option<String>,
    /// Longest one email delivery may take: `30s`, `500ms`, `2m` or seconds [default: 30s].
    #[arg(
        long,
        env = "FLOWD_SMTP_TIMEOUT",
        global = true,
        value_name = "DURATION"
    )]
    smtp_timeout: Option<String>,
    /// API keys, comma-separated, besides those made with `flowd keys create`. Prefer the
    /// variable: other users of the machine can see command lines.
    #[arg(
        long,
        env = "FLOWD_API_KEYS",
        global = true,
        hide_env_values = true,
        value_name = "KEYS"
    )]
    api_keys: Option<String>,
    /// The master key that encrypts the secret store: 32 bytes as base64 or 64 hex digits,
    /// the same on every node [default: the key file].
    #[arg(
        long,
        env = "FLOWD_MASTER_KEY",
        global = true,
        hide_env_values = true,
        value_name = "KEY"
    )]
    master_key: Option<String>,
    /// The file holding the master key when FLOWD_MASTER_KEY is not set; `flowd serve` creates
    /// it (mode 0600) on first start [default: flowd-master.key beside the SQLite database, or
    /// in the working directory].
    #[arg(
        long,
        env = "FLOWD_MASTER_KEY_FILE",
        global = true,
        value_name = "PATH"
    )]
    master_key_file: Option<PathBuf>,
}

impl ConfigArgs {
    /// A setting by the name of its variable, as the modules' `from_lookup` parsers ask.
    fn get(&self, name: &str) -> Option<String> {
        let value = match name {
            "FLOWD_SQLITE_SYNC" => &self.sqlite_sync,
            "FLOWD_DATABASE_MAX_CONNECTIONS" => &self.database_max_connections,
            "FLOWD_HTTP_DENY" => &self.http_deny,
            "FLOWD_HTTP_ALLOW" => &self.http_allow,
            "FLOWD_HTTP_REQUIRE_HTTPS" => &self.http_require_https,
            "FLOWD_SMTP_URL" => &self.smtp_url,
            "FLOWD_SMTP_FROM" => &self.smtp_from,
            "FLOWD_SMTP_TIMEOUT" => &self.smtp_timeout,
            _ => &None,
        };
        value.clone()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging: the format, and the filter when one is given (else the command's default level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: Option<String>,
}

/// A setting that works but is probably not what was meant, or is unsafe; logged at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The variable concerned.
    pub setting: String,
    pub message: String,
}

/// Every shared setting, checked. Built once in `main`.
#[derive(Debug, Clone)]
pub struct Config {
    pub log: LogSettings,
    pub store: StoreOptions,
    /// The `http` step's network policy (`FLOWD_HTTP_*`).
    pub net: NetPolicy,
    /// Flow validation, made from the same `FLOWD_HTTP_REQUIRE_HTTPS` as `net`.
    pub validation: Options,
    /// `None` when `FLOWD_SMTP_URL` is unset or blank.
    pub mailer: Option<Mailer>,
    pub api_keys: ApiKeys,
    pub secrets: Secrets,
    /// `FLOWD_MASTER_KEY`, checked.
    pub master_key: Option<MasterKey>,
    /// `FLOWD_MASTER_KEY_FILE`, when given.
    pub master_key_file: Option<PathBuf>,
    /// Risky combinations found while parsing, for `main` to log once logging is set up.
    pub warnings: Vec<Warning>,
}

/// A setting that cannot be used; flowd does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("FLOWD_LOG_FORMAT: expected text or json, got \"{0}\"")]
    LogFormat(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Net(#[from] PolicyError),
    #[error(transparent)]
    Email(#[from] EmailError),
    #[error(transparent)]
    MasterKey(#[from] KeyError),
}

impl Config {
    /// The configuration of this process: `args` as clap parsed them (flags, then their
    /// variables) and the `FLOWD_SECRET_*` variables of the environment.
    pub fn load(args: &ConfigArgs) -> Result<Config, ConfigError> {
        Config::parse(args, std::env::vars_os())
    }

    /// The configuration from `args` and the environment variables `env` (name, value).
    pub fn parse(
        args: &ConfigArgs,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let log = LogSettings {
            format: parse_log_format(args.log_format.as_deref())?,
            filter: args.log_filter.clone().filter(|f| !f.trim().is_empty()),
        };
        let store = StoreOptions::from_lookup(|name| args.get(name))?;
        let net = NetPolicy::from_lookup(|name| args.get(name))?;
        let validation = Options {
            require_https: net.require_https(),
            known_secrets: None,
            secrets: None,
        };
        let mailer = Mailer::from_lookup(|name| args.get(name))?;
        if let Some(url) = args.smtp_url.as_deref() {
            warnings.extend(smtp_warning(url));
        }
        let api_keys = ApiKeys::parse(args.api_keys.as_deref().unwrap_or_default());
        if api_keys.short() > 0 {
            warnings.push(Warning {
                setting: "FLOWD_API_KEYS".into(),
                message: format!(
                    "The list holds {} key(s) shorter than {MIN_KEY_LEN} characters, easy to guess; \
                     `flowd keys create` makes strong ones.",
                    api_keys.short()
                ),
            });
        }
        let secrets = secrets_from(env, &mut warnings);
        let master_key = args
            .master_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
            .map(|k| MasterKey::parse(k, "FLOWD_MASTER_KEY"))
            .transpose()?;
        Ok(Config {
            log,
            store,
            net,
            validation,
            mailer,
            api_keys,
            secrets,
            master_key,
            master_key_file: args.master_key_file.clone(),
            warnings,
        })
    }

    /// Where the master key of the store at `database_url` comes from: `FLOWD_MASTER_KEY`, else
    /// the key file (`FLOWD_MASTER_KEY_FILE`, else `flowd-master.key` beside a SQLite database
    /// or in the working directory).
    pub fn master_key_source(&self, database_url: &str) -> MasterKeySource {
        if let Some(key) = &self.master_key {
            return MasterKeySource::Given(key.clone());
        }
        let file = self.master_key_file.clone().unwrap_or_else(|| {
            sqlite_dir(database_url)
                .unwrap_or_default()
                .join(DEFAULT_KEY_FILE)
        });
        MasterKeySource::File(file)
    }

    /// What an engine on `database_url` needs of this configuration.
    pub fn engine(
        &self,
        database_url: impl Into<String>,
        node_id: impl Into<String>,
    ) -> EngineConfig {
        let database_url = database_url.into();
        EngineConfig {
            master_key: self.master_key_source(&database_url),
            database_url,
            store: self.store.clone(),
            node_id: node_id.into(),
            net: self.net.clone(),
            validation: self.validation.clone(),
            mailer: self.mailer.clone(),
            secrets: self.secrets.clone(),
            api_keys: self.api_keys.clone(),
            clock: crate::core::clock::SystemClock::shared(),
        }
    }
}

/// The master key file's name when none is given.
pub const DEFAULT_KEY_FILE: &str = "flowd-master.key";

/// The folder of a SQLite database URL's file (`sqlite://data/flowd.db` → `data`).
fn sqlite_dir(database_url: &str) -> Option<PathBuf> {
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(
        std::path::Path::new(path)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
    )
}

/// `text` or `json`, in any case; unset or empty is text.
fn parse_log_format(value: Option<&str>) -> Result<LogFormat, ConfigError> {
    let value = value.unwrap_or_default();
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(ConfigError::LogFormat(value.to_string())),
    }
}

/// The secrets among the environment variables. A `FLOWD_SECRET_*` variable that is not UTF-8
/// cannot be put in a template and is left out; an empty one renders as nothing. Both are
/// warned about, by name only.
fn secrets_from(
    env: impl IntoIterator<Item = (OsString, OsString)>,
    warnings: &mut Vec<Warning>,
) -> Secrets {
    let mut vars = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let warn = |message: &str| Warning {
            setting: name.to_string(),
            message: message.to_string(),
        };
        match value.into_string() {
            Ok(value) if value.is_empty() => {
                warnings.push(warn(
                    "The secret is empty: templates using it render nothing.",
                ));
                vars.push((name.to_string(), value));
            }
            Ok(value) => vars.push((name.to_string(), value)),
            Err(_) => warnings.push(warn(
                "The value is not valid UTF-8; the secret is left out.",
            )),
        }
    }
    Secrets::from_env_vars(vars)
}

/// An SMTP password that would travel unencrypted (or could, after a STARTTLS downgrade) to a
/// host other than this machine. The message names the host, never the URL.
fn smtp_warning(url: &str) -> Option<Warning> {
    let url = Url::parse(url.trim()).ok()?;
    let tls_required = url
        .query_pairs()
        .any(|(key, value)| key == "tls" && value == "required");
    let local = match url.host()? {
        // `smtp:` is not a scheme the url crate knows, so an IPv4 host comes as a domain.
        Host::Domain(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Host::Ipv4(ip) => IpAddr::V4(ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(ip).is_loopback(),
    };
    let password = url.password().is_some_and(|p| !p.is_empty());
    (url.scheme() == "smtp" && password && !tls_required && !local).then(|| Warning {
        setting: "FLOWD_SMTP_URL".into(),
        message: format!(
            "The SMTP password may be sent to {} without encryption: use smtps:// or \
             ?tls=required.",
            url.host_str().unwrap_or_default()
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn args(flags: &[&str]) -> ConfigArgs {
        let argv = std::iter::once("flowd").chain(flags.iter().copied());
        Cli::try_parse_from(argv).expect("flags parse").config
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        let config = Config::parse(&ConfigArgs::default(), env(&[])).unwrap();
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(config.store, StoreOptions::default());
        assert_eq!(config.net, NetPolicy::default());
        assert!(!config.validation.require_https);
        assert!(config.mailer.is_none() && config.api_keys.is_empty());
        assert_eq!(config.secrets.names().count(), 0);
        assert_eq!(config.warnings, []);
    }

    /// The same parser decides for validation and for the network policy, with the stricter
    /// forms of the two parsers there used to be.
    #[test]
    fn require_https_is_parsed_once_and_strictly() {
        for (flag, expected) in [
            ("--http-require-https", true),
            ("--http-require-https=on", true),
            ("--http-require-https=YES", true),
            ("--http-require-https=1", true),
            ("--http-require-https=off", false),
            ("--http-require-https=", false),
        ] {
            let config = Config::parse(&args(&[flag]), env(&[])).unwrap();
            assert_eq!(config.validation.require_https, expected, "{flag}");
            assert_eq!(config.net.require_https(), expected, "{flag}");
        }
        let error = Config::parse(&args(&["--http-require-https=sure"]), env(&[])).unwrap_err();
        assert!(
            matches!(error, ConfigError::Net(PolicyError::BadBool { .. })),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("FLOWD_HTTP_REQUIRE_HTTPS"),
            "{error}"
        );
    }

    #[test]
    fn bad_values_stop_the_start_naming_the_variable() {
        for (flags, variable) in [
            (&["--sqlite-sync", "ful"][..], "FLOWD_SQLITE_SYNC"),
            (
                &["--database-max-connections", "0"],
                "FLOWD_DATABASE_MAX_CONNECTIONS",
            ),
            (&["--http-deny", "10.0.0.0/33"], "FLOWD_HTTP_DENY"),
            (&["--smtp-url", "smtp://h?tsl=required"], "FLOWD_SMTP_URL"),
            (
                &["--smtp-url", "smtp://h", "--smtp-timeout", "soon"],
                "FLOWD_SMTP_TIMEOUT",
            ),
            (&["--log-format", "pretty"], "FLOWD_LOG_FORMAT"),
        ] {
            let error = Config::parse(&args(flags), env(&[])).unwrap_err();
            assert!(error.to_string().contains(variable), "{flags:?}: {error}");
        }
    }

    #[test]
    fn flags_reach_every_part() {
        let config = Config::parse(
            &args(&[
                "--log-format=JSON",
                "--sqlite-sync=full",
                "--http-deny=10.0.0.0/8",
                "--smtp-url=smtp://127.0.0.1:2525",
                "--api-keys=fk_0123456789abcdef,fk_fedcba9876543210",
            ]),
            env(&[("FLOWD_SECRET_TOKEN", "t0ken"), ("HOME", "/root")]),
        )
        .unwrap();
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(config.store.sqlite_sync_full);
        assert!(config.net.check_ip("10.1.2.3".parse().unwrap()).is_err());
        assert!(config.mailer.is_some());
        assert_eq!(config.api_keys.len(), 2);
        assert_eq!(config.secrets.names().collect::<Vec<_>>(), ["TOKEN"]);
        assert_eq!(config.warnings, []);
    }

    /// The variables the modules' parsers ask [`ConfigArgs::get`] for.
    const LOOKUP_VARIABLES: [&str; 8] = [
        "FLOWD_SQLITE_SYNC",
        "FLOWD_DATABASE_MAX_CONNECTIONS",
        "FLOWD_HTTP_DENY",
        "FLOWD_HTTP_ALLOW",
        "FLOWD_HTTP_REQUIRE_HTTPS",
        "FLOWD_SMTP_URL",
        "FLOWD_SMTP_FROM",
        "FLOWD_SMTP_TIMEOUT",
    ];

    /// Every variable the modules' parsers ask for has a flag here: a new one must be added.
    #[test]
    fn every_variable_the_parsers_read_has_a_flag() {
        let asked = RefCell::new(Vec::new());
        let record = |name: &str| {
            asked.borrow_mut().push(name.to_string());
            None
        };
        StoreOptions::from_lookup(record).unwrap();
        NetPolicy::from_lookup(record).unwrap();
        // The mailer asks for the rest only once a URL is set.
        let with_url = |name: &str| {
            asked.borrow_mut().push(name.to_string());
            (name == "FLOWD_SMTP_URL").then(|| "smtp://127.0.0.1:2525".to_string())
        };
        Mailer::from_lookup(with_url).unwrap();
        let every_flag: Vec<String> = LOOKUP_VARIABLES
            .iter()
            .map(|v| {
                format!(
                    "--{}=x",
                    v["FLOWD_".len()..].to_ascii_lowercase().replace('_', "-")
                )
            })
            .collect();
        let every_flag: Vec<&str> = every_flag.iter().map(String::as_str).collect();
        let all_set = args(&every_flag);
        for name in asked.into_inner() {
            assert!(
                LOOKUP_VARIABLES.contains(&name.as_str()),
                "{name} has no flag"
            );
            assert!(all_set.get(&name).is_some(), "{name} is not passed on");
        }
    }

    #[test]
    fn risky_settings_are_warned_about_by_name_only() {
        let config = Config::parse(
            &args(&[
                "--api-keys=alpha-key,fk_0123456789abcdef",
                "--smtp-url=smtp://me:hunter2-XYZ@mail.example.com:587",
            ]),
            env(&[("FLOWD_SECRET_EMPTY", "")]),
        )
        .unwrap();
        let settings: Vec<&str> = config.warnings.iter().map(|w| w.setting.as_str()).collect();
        assert_eq!(
            settings,
            ["FLOWD_SMTP_URL", "FLOWD_API_KEYS", "FLOWD_SECRET_EMPTY"]
        );
        let shown = format!("{:?}", config.warnings);
        assert!(
            !shown.contains("hunter2") && !shown.contains("alpha-key"),
            "{shown}"
        );
        for safe in [
            "smtps://me:pw@mail.example.com",
            "smtp://me:pw@mail.example.com?tls=required",
            "smtp://me:pw@127.0.0.1:2525",
            "smtp://mail.example.com",
        ] {
            assert_eq!(smtp_warning(safe), None, "{safe}");
        }
    }

    #[test]
    fn the_master_key_comes_from_the_variable_or_a_file_beside_the_database() {
        let key = MasterKey::generate();
        let config = Config::parse(&args(&["--master-key", &key.encode()]), env(&[])).unwrap();
        assert!(matches!(
            config.master_key_source("sqlite://x.db"),
            MasterKeySource::Given(k) if k.fingerprint() == key.fingerprint()
        ));
        let config = Config::parse(&ConfigArgs::default(), env(&[])).unwrap();
        for (url, file) in [
            ("sqlite://data/flowd.db", "data/flowd-master.key"),
            ("sqlite:flowd.db?mode=rwc", "flowd-master.key"),
            ("postgres://u@h/db", "flowd-master.key"),
        ] {
            assert!(
                matches!(config.master_key_source(url), MasterKeySource::File(p) if p == std::path::Path::new(file)),
                "{url}"
            );
        }
        let error = Config::parse(&args(&["--master-key", "too-short"]), env(&[])).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("FLOWD_MASTER_KEY: expected 32 bytes"),
            "{error}"
        );
        assert!(!error.to_string().contains("too-short"));
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_that_is_not_utf8_is_left_out_with_a_warning() {
        use std::os::unix::ffi::OsStringExt;
        let env = vec![
            (
                OsString::from("FLOWD_SECRET_BAD"),
                OsString::from_vec(vec![0xff, 0xfe]),
            ),
            (OsString::from("FLOWD_SECRET_GOOD"), OsString::from("ok")),
        ];
        let config = Config::parse(&ConfigArgs::default(), env).unwrap();
        assert_eq!(config.secrets.names().collect::<Vec<_>>(), ["GOOD"]);
        assert_eq!(config.warnings[0].setting, "FLOWD_SECRET_BAD");
    }
}
