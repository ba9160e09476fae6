//! The voice rig: Maskline between a sipp UAS (its outbound gateway) and
//! the test's sipp UACs.

use serde_json::Value;

use super::sipp::{self, Sipp, Transport};
use super::*;

/// Maskline between a UAS (its outbound gateway) and the test's UACs, with
/// one tenant whose pool holds `x(1)` and `x(2)`.
pub struct Rig {
    pub _dir: tempfile::TempDir,
    pub server: Server,
    /// Maskline's SIP address, `127.0.0.1:PORT`, UDP and TCP.
    pub sip: String,
    pub key: String,
}

impl Rig {
    /// Starts Maskline with `gateway` as its outbound gateway (over the
    /// gateway's transport); `env` adds or overrides variables.
    pub async fn start(gateway: &Sipp, env: &[(&str, &str)]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let sip_port = sipp::free_sip_port();
        let sip = format!("127.0.0.1:{sip_port}");
        let mut vars: Vec<(String, String)> = [
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY.to_owned()),
            ("MASKLINE_SWITCH_KEY", SWITCH_KEY.to_owned()),
            ("MASKLINE_SIP_LISTEN", sip.clone()),
            (
                "MASKLINE_SIP_OUTBOUND",
                format!("127.0.0.1:{}", gateway.port),
            ),
            (
                "MASKLINE_SIP_OUTBOUND_TRANSPORT",
                gateway.transport.env().to_owned(),
            ),
            ("MASKLINE_SIP_TRUSTED", "127.0.0.1/32".to_owned()),
            // Short timers keep retransmission paths quick.
            ("MASKLINE_SIP_T1_MS", "100".to_owned()),
            ("MASKLINE_SIP_RING_TIMEOUT_SECS", "60".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in env {
            match vars.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => vars.push((k.to_string(), v.to_string())),
            }
        }
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = Server::start_with(dir.path(), &pairs).await;
        // Ready means HTTP answers; SIP may bind a moment later.
        eventually(10, "Maskline's SIP port", || async move {
            (sipp::port_bound(Transport::Udp, sip_port)
                && sipp::port_bound(Transport::Tcp, sip_port))
            .then_some(())
        })
        .await;
        let (_tenant, key) = server.create_tenant("ride").await;
        server.import(&key, &[&x(1), &x(2)]).await;
        Rig {
            _dir: dir,
            server,
            sip,
            key,
        }
    }

    pub async fn bind(&self, body: Value) -> Value {
        let (st, b) = self.server.bind(&self.key, body).await;
        assert_eq!(st, 201, "{b}");
        b
    }

    /// A UAC calling `x` from `caller` (From user, or P-Asserted-Identity
    /// for `uac_call_pai.xml`).
    pub fn uac(
        &self,
        scenario: &str,
        caller: &str,
        x: &str,
        transport: Transport,
        extra: &[&str],
    ) -> Sipp {
        Sipp::uac(
            scenario,
            &self.sip,
            transport,
            x,
            &[("caller", caller)],
            extra,
        )
    }

    /// The tenant's CDRs, optionally of one binding.
    pub async fn calls(&self, binding_id: Option<&str>) -> Vec<Value> {
        let path = binding_id.map_or_else(
            || "/v1/calls".to_owned(),
            |b| format!("/v1/calls?binding_id={b}"),
        );
        self.server.list_all(&path, &self.key, 100).await
    }

    /// Waits for the binding's CDRs to number `n` and returns them.
    pub async fn cdrs(&self, binding: &Value, n: usize) -> Vec<Value> {
        let id = binding["id"].as_str().expect("binding id");
        let rig = self;
        let cdrs = eventually(15, "the CDRs", || async move {
            let c = rig.calls(Some(id)).await;
            (c.len() >= n).then_some(c)
        })
        .await;
        assert_eq!(cdrs.len(), n, "one CDR per inbound INVITE: {cdrs:#?}");
        cdrs
    }

    /// Waits for a CDR of the tenant that `pick` accepts.
    pub async fn cdr_where(&self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let rig = self;
        let pick = &pick;
        eventually(15, what, || async move {
            rig.calls(None).await.into_iter().find(|c| pick(c))
        })
        .await
    }
}
