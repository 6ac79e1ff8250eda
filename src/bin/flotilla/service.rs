//! `flotilla service ...`: one control request each (and, unless detached, the convergence
//! progress of `create` and `scale`), and what is printed for the answer.

use flotilla::client::progress::wait_converged;
use flotilla::client::render;
use flotilla::client::{Client, ClientError};
use flotilla::core::spec::ServiceMode;
use flotilla::net::admin::{AdminReply, AdminRequest};

use crate::args::{service_spec, ServiceCommand};
use crate::now_ms;

pub(crate) async fn service(client: &Client, command: ServiceCommand) -> Result<(), ClientError> {
    match command {
        ServiceCommand::Create(args) => {
            let spec = service_spec(&args).map_err(ClientError::Remote)?;
            let replicas = match spec.mode {
                ServiceMode::Replicated { replicas } => Some(replicas),
                ServiceMode::Global => None,
            };
            let name = spec.name.clone();
            let id = match client.control(AdminRequest::ServiceCreate { spec }).await? {
                AdminReply::Done(ids) => ids.into_iter().next().unwrap_or_default(),
                other => return Err(ClientError::unexpected(other)),
            };
            println!("{id}");
            if let (false, Some(replicas)) = (args.detach, replicas) {
                wait_converged(client, &name, replicas).await?;
            }
        }
        ServiceCommand::Ls { format } => match client.control(AdminRequest::ServiceList).await? {
            AdminReply::Services(services) => {
                print!("{}", render::services(&services, format.into()))
            }
            other => return Err(ClientError::unexpected(other)),
        },
        ServiceCommand::Ps {
            format,
            no_trunc,
            services,
        } => {
            let tasks = client.service_tasks(&services).await?;
            print!(
                "{}",
                render::tasks(&tasks, format.into(), no_trunc, now_ms())
            );
        }
        ServiceCommand::Inspect { services } => {
            match client
                .control(AdminRequest::ServiceInspect { services })
                .await?
            {
                AdminReply::ServiceDetails(services) => println!("{}", render::json(&services)),
                other => return Err(ClientError::unexpected(other)),
            }
        }
        ServiceCommand::Scale { detach, targets } => {
            client
                .control(AdminRequest::ServiceScale {
                    targets: targets.clone(),
                })
                .await?;
            for (service, replicas) in &targets {
                println!("{service} scaled to {replicas}");
            }
            if !detach {
                for (service, replicas) in targets {
                    wait_converged(client, &service, replicas).await?;
                }
            }
        }
        ServiceCommand::Rm { services } => {
            client
                .control(AdminRequest::ServiceRemove {
                    services: services.clone(),
                })
                .await?;
            for service in services {
                println!("{service}");
            }
        }
    }
    Ok(())
}
