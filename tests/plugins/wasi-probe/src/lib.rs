//! Reports, as the body of a (status 200) denial, what WASI gave it.

use wardgate_sdk::prelude::*;

wit_bindgen::generate!({ path: "wit", world: "probe", generate_all });

use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};

#[derive(Deserialize)]
struct Config {}

struct Probe;

impl Plugin for Probe {
    type Config = Config;
    const HOOKS: Hooks = Hooks::HTTP_REQUEST;

    fn configure(_: Config) -> Result<Self, ConfigError> {
        Ok(Probe)
    }

    fn on_http_request(&self, _: &RequestContext, req: HttpRequest) -> HttpRequestAction {
        let port: u16 = req
            .header("x-probe-port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(9);
        let net = wasi::sockets::instance_network::instance_network();
        let tcp = match wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
            Err(e) => format!("create failed: {e:?}"),
            Ok(sock) => {
                let addr = IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port,
                    address: (127, 0, 0, 1),
                });
                match sock.start_connect(&net, addr) {
                    Err(e) => format!("denied: {e:?}"),
                    Ok(()) => {
                        sock.subscribe().block();
                        match sock.finish_connect() {
                            Ok(_) => "connected".to_string(),
                            Err(e) => format!("failed: {e:?}"),
                        }
                    }
                }
            }
        };
        let dns = match wasi::sockets::ip_name_lookup::resolve_addresses(&net, "localhost") {
            Err(e) => format!("denied: {e:?}"),
            Ok(_) => "resolved".to_string(),
        };
        let report = serde_json::json!({
            "preopens": wasi::filesystem::preopens::get_directories().len(),
            "env": wasi::cli::environment::get_environment().len(),
            "args": wasi::cli::environment::get_arguments().len(),
            "wall_clock_secs": wasi::clocks::wall_clock::now().seconds,
            "tcp": tcp,
            "dns": dns,
        });
        deny(200, report.to_string())
    }
}

export_plugin!(Probe);
