//! The transport actor: the one place outgoing traffic goes through.
//!
//! Other actors hold `Recipient<SendMessage>` / `Recipient<Request>` instead of the transport
//! itself, so tests can replace the network. The work happens on the shared [`Transport`]
//! handle; the actor only hands each send to it without blocking its mailbox.
//!
//! The inbound half of the bridge is here too: [`Inbound`] is an actix message, and a
//! `Recipient<Inbound>` is the [`InboundHandler`] the node gives `Transport::bind`, so what
//! arrives on the wire lands in an actor's mailbox while `net` stays free of actix.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;

use crate::net::fault::FaultRule;
use crate::net::message::Message as WireMessage;
use crate::net::transport::{
    DeliveryError, DeliveryFuture, Expect, Inbound, InboundHandler, Transport, TransportError,
};

impl Message for Inbound {
    /// The reply for a request; ignored for one-way messages.
    type Result = Option<WireMessage>;
}

impl InboundHandler for Recipient<Inbound> {
    fn deliver(&self, inbound: Inbound) -> DeliveryFuture {
        // `send` waits for the handler's answer, which is what gives the transport its
        // back-pressure: a stream reads its next frame only once the actor took this one.
        let request = self.send(inbound);
        Box::pin(async move {
            request
                .await
                .map_err(|error| DeliveryError(error.to_string()))
        })
    }
}

/// Send a one-way message; failures are logged, not returned (the protocols above retry).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SendMessage {
    /// Where to.
    pub to: SocketAddr,
    /// Whose certificate the server there must show (see [`Expect`]).
    pub expect: Expect,
    /// What.
    pub message: WireMessage,
}

/// Send a request and get the peer's reply.
#[derive(Debug, Message)]
#[rtype(result = "Result<WireMessage, TransportError>")]
pub struct Request {
    /// Where to.
    pub to: SocketAddr,
    /// Whose certificate the server there must show (see [`Expect`]).
    pub expect: Expect,
    /// What.
    pub message: WireMessage,
    /// How long to wait for the reply.
    pub timeout: Duration,
}

/// Set or clear a fault-injection rule for traffic with one peer (tests and chaos only).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetFault {
    /// The peer's node ID.
    pub peer_node_id: String,
    /// The rule, or `None` to clear it.
    pub rule: Option<FaultRule>,
}

/// Owns the node's [`Transport`] handle.
pub struct TransportActor {
    transport: Transport,
}

impl TransportActor {
    /// An actor in front of `transport`.
    pub fn new(transport: Transport) -> Self {
        Self { transport }
    }
}

impl Actor for TransportActor {
    type Context = Context<Self>;
}

impl Handler<SendMessage> for TransportActor {
    type Result = ();

    fn handle(&mut self, message: SendMessage, _: &mut Context<Self>) {
        let transport = self.transport.clone();
        actix::spawn(async move {
            if let Err(error) = transport
                .send_expecting(message.to, message.expect, message.message)
                .await
            {
                tracing::debug!(to = %message.to, %error, "one-way send failed");
            }
        });
    }
}

impl Handler<Request> for TransportActor {
    type Result = ResponseFuture<Result<WireMessage, TransportError>>;

    fn handle(&mut self, request: Request, _: &mut Context<Self>) -> Self::Result {
        let transport = self.transport.clone();
        Box::pin(async move {
            transport
                .request_expecting(request.to, request.expect, request.message, request.timeout)
                .await
        })
    }
}

impl Handler<SetFault> for TransportActor {
    type Result = ();

    fn handle(&mut self, fault: SetFault, _: &mut Context<Self>) {
        self.transport.faults().set(&fault.peer_node_id, fault.rule);
    }
}
