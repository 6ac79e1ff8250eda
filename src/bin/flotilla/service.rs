//! `flotilla service ...`: one control request each (and, unless detached, the progress of
//! `create`, `scale`, `update` and `rollback`), and what is printed for the answer.

use flotilla::client::progress::wait_converged;
use flotilla::client::render;
use flotilla::client::rollout_progress::wait_rollout;
use flotilla::client::update::{apply_changes, ServiceChanges};
use flotilla::client::{Client, ClientError};
use flotilla::core::model::Service;
use flotilla::core::spec::ServiceMode;
use flotilla::net::admin::{AdminReply, AdminRequest};

use crate::args::{service_spec, ServiceCommand, UpdateArgs};
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
        ServiceCommand::Update(args) => update(client, &args).await?,
        ServiceCommand::Rollback { detach, service } => rollback(client, &service, detach).await?,
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

async fn inspect_one(client: &Client, service: &str) -> Result<Service, ClientError> {
    let request = AdminRequest::ServiceInspect {
        services: vec![service.to_string()],
    };
    match client.control(request).await? {
        AdminReply::ServiceDetails(services) => services
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Remote(format!("no such service: {service}"))),
        other => Err(ClientError::unexpected(other)),
    }
}

/// `service update`: reads the service, applies the flags to its spec (refusing a bad value
/// before anything is sent) and sends the whole spec with the version it read, so a change
/// made by someone else in between is refused (`update out of sequence`), not overwritten.
/// With no change and no `--force` nothing is sent and only the name is printed, as Docker
/// prints it for a no-op update.
async fn update(client: &Client, args: &UpdateArgs) -> Result<(), ClientError> {
    let changes = args.changes();
    if args.rollback {
        if changes != ServiceChanges::default() {
            return Err(ClientError::Remote(
                "--rollback can't be combined with other flags than -d".into(),
            ));
        }
        return rollback(client, &args.service, args.detach).await;
    }
    let current = inspect_one(client, &args.service).await?;
    let spec = apply_changes(&current.spec, &changes)
        .map_err(|error| ClientError::Remote(error.to_string()))?;
    if spec == current.spec {
        println!("{}", args.service);
        return Ok(());
    }
    let scale_only = current.spec.differs_only_in_replicas(&spec);
    let replicas = match spec.mode {
        ServiceMode::Replicated { replicas } => Some(replicas),
        ServiceMode::Global => None,
    };
    client
        .control(AdminRequest::ServiceUpdate {
            service: current.id.clone(),
            spec,
            expected_version: current.meta.version,
        })
        .await?;
    println!("{}", args.service);
    if args.detach {
        return Ok(());
    }
    match (scale_only, replicas) {
        (true, Some(replicas)) => wait_converged(client, &current.id, replicas).await,
        (true, None) => Ok(()),
        (false, _) => wait_rollout(client, &current.id).await,
    }
}

/// `service rollback` / `service update --rollback`.
async fn rollback(client: &Client, service: &str, detach: bool) -> Result<(), ClientError> {
    client
        .control(AdminRequest::ServiceRollback {
            service: service.to_string(),
        })
        .await?;
    println!("{service}");
    if detach {
        return Ok(());
    }
    wait_rollout(client, service).await
}
