//! Relative file paths in a config file are relative to the file's folder,
//! wherever the gateway was started from. This rewrites them once, before
//! the config is built, so nothing downstream needs to know.

use super::schema::{Config, Jwks};
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
