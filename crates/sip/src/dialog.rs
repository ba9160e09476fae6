//! One dialog as Maskline sees it (§12): identifiers, remote target, route
//! set, CSeq, and the requests built within it. No call policy: a call
//! holds one dialog per leg.

use maskline_core::Number;

use crate::Transport;
use crate::endpoint::via_value;
use crate::message::{Body, Builder, Message, Method, Name, uri_of};
use crate::transport::Peer;

pub(crate) struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    /// Our From/To value, tag included.
    pub local: String,
    /// Theirs, tag included once known.
    pub remote: String,
    pub remote_tag: Option<String>,
    /// The remote target (their Contact URI): the Request-URI we use.
    pub target: String,
    pub routes: Vec<String>,
    pub cseq: u32,
    /// The peer the dialog's signalling runs over (a trunk or the gateway):
    /// in-dialog requests go here, whatever a Contact says, so a party
    /// cannot steer Maskline's traffic anywhere else.
    pub peer: Peer,
    /// Our Contact header value in this dialog.
    pub contact: String,
}

impl Dialog {
    /// A request within the dialog, carrying `body` if given.
    pub fn request(
        &self,
        adv: &str,
        method: &Method,
        cseq: u32,
        branch: &str,
        body: Option<&Body>,
    ) -> Vec<u8> {
        let mut b = Builder::request(method, &self.target);
        b.header("Via", &via_value(adv, self.peer.transport, branch))
            .max_forwards(70)
            .header("From", &self.local)
            .header("To", &self.remote)
            .header("Call-ID", &self.call_id)
            .cseq(cseq, method);
        for r in &self.routes {
            b.header("Route", r);
        }
        if matches!(method, Method::Invite | Method::Update) {
            b.header("Contact", &self.contact);
        }
        b.finish_with(body)
    }

    /// Learns the far end's tag, target and route set from a response that
    /// creates (early) or confirms a dialog we initiated.
    pub fn learn_remote(&mut self, resp: &Message, confirmed: bool) {
        let Some(tag) = resp.to_tag() else {
            return;
        };
        if self.remote_tag.is_some() && !confirmed {
            return;
        }
        self.remote_tag = Some(tag.to_owned());
        self.remote = resp.to().to_owned();
        if let Some(contact) = resp.values(Name::Contact).next() {
            self.target = uri_of(contact).to_owned();
        }
        // §12.1.2: the UAC's route set is the Record-Route in reverse.
        let mut routes: Vec<String> = resp.values(Name::RecordRoute).map(str::to_owned).collect();
        routes.reverse();
        self.routes = routes;
    }
}

/// Our Contact on a leg: X at our address, so a party learns nothing else.
pub(crate) fn contact_value(x: &Number, adv: &str, transport: Transport) -> String {
    match transport {
        Transport::Udp => format!("<sip:{x}@{adv}>"),
        Transport::Tcp => format!("<sip:{x}@{adv};transport=tcp>"),
    }
}
