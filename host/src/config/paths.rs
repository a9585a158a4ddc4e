//! Relative file paths in a config file are relative to the file's folder,
//! wherever the gateway was started from. This rewrites them once, before
//! the config is built, so nothing downstream needs to know.

use super::schema::{
    AiProviderPolicies, AzureAuth, AzureClientSecret, AzureExplicit, BackendAuth, BackendKind,
    Config, GcpAuth, Jwks, SecretSource,
};
use crate::policy::{PluginSource, PluginSpec};

pub fn resolve(config: &mut Config) {
    let Some(dir) = config.base_dir.clone() else {
        return;
    };
    let fix = |path: &mut String| {
        if std::path::Path::new(path.as_str()).is_relative() {
            *path = dir.join(path.as_str()).display().to_string();
        }
    };
    let fix_plugins = |plugins: &mut [PluginSpec]| {
        for spec in plugins {
            if let Some(PluginSource::File(p)) = &mut spec.source
                && p.is_relative()
            {
                *p = dir.join(&*p);
            }
        }
    };
    if let Some(SecretSource::File { file }) = config.config.session.as_mut().map(|s| &mut s.key) {
        fix(file);
    }
    for bind in &mut config.binds {
        for listener in &mut bind.listeners {
            if let Some(tls) = &mut listener.tls {
                fix(&mut tls.cert);
                fix(&mut tls.key);
                for pair in &mut tls.certificates {
                    fix(&mut pair.cert);
                    fix(&mut pair.key);
                }
            }
            fix_plugins(&mut listener.plugins);
            for route in &mut listener.routes {
                if let Some(plugins) = &mut route.plugins {
                    fix_plugins(plugins);
                }
                let p = &mut route.policies;
                if let Some(root) = p.backend_tls.as_mut().and_then(|t| t.root.as_mut()) {
                    fix(root);
                }
                let fix_policies = |p: &mut Option<BackendAuth>, tls: Option<&mut String>| {
                    match p {
                        Some(BackendAuth::Key(SecretSource::File { file }))
                        | Some(BackendAuth::Gcp(GcpAuth {
                            credential: Some(SecretSource::File { file }),
                            ..
                        }))
                        | Some(BackendAuth::Azure(AzureAuth::ExplicitConfig(
                            AzureExplicit::ClientSecret(AzureClientSecret {
                                client_secret: SecretSource::File { file },
                                ..
                            }),
                        ))) => fix(file),
                        Some(BackendAuth::Aws(aws)) => {
                            let keys = [
                                &mut aws.access_key_id,
                                &mut aws.secret_access_key,
                                &mut aws.session_token,
                            ];
                            for key in keys {
                                if let Some(SecretSource::File { file }) = key {
                                    fix(file);
                                }
                            }
                        }
                        _ => {}
                    }
                    if let Some(root) = tls {
                        fix(root);
                    }
                };
                fix_policies(&mut p.backend_auth, None);
                for backend in &mut route.backends {
                    if let BackendKind::Ai(ai) = &mut backend.kind {
                        let own = ai.policies.iter_mut().chain(
                            ai.groups
                                .iter_mut()
                                .flat_map(|g| g.providers.iter_mut())
                                .filter_map(|p| p.policies.as_mut()),
                        );
                        for AiProviderPolicies {
                            backend_auth,
                            backend_tls,
                        } in own
                        {
                            fix_policies(
                                backend_auth,
                                backend_tls.as_mut().and_then(|t| t.root.as_mut()),
                            );
                        }
                    }
                }
                let p = &mut route.policies;
                if let Some(basic) = &mut p.basic_auth {
                    if let Some(SecretSource::File { file }) = &mut basic.htpasswd {
                        fix(file);
                    }
                    if let Some(file) = &mut basic.htpasswd_file {
                        fix(file);
                    }
                }
                if let Some(jwt) = &mut p.jwt_auth {
                    if let Some(Jwks::File(f)) = &mut jwt.jwks {
                        fix(f);
                    }
                    for provider in &mut jwt.providers {
                        if let Jwks::File(f) = &mut provider.jwks {
                            fix(f);
                        }
                    }
                }
            }
        }
    }
}
