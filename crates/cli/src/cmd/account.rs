//! `accelhub account …` and `accelhub agent-token …`.

use crate::cli::Conn;
use crate::output::{emit, note, table};
use accelhub_domain::Role;
use clap::Subcommand;
use std::fmt::Write;

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an account (operator) and print its token.
    Create {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List accounts (operator).
    List,
    /// Show the account of the current token.
    Whoami,
    /// Set your monthly spending limit (an amount such as 25.00), or
    /// remove it (`none`).
    Limit { amount: String },
}

#[derive(Debug, Subcommand)]
pub enum AgentTokenCmd {
    /// Issue a token for the agents of a group of nodes and print it.
    Create { name: String },
    /// List agent tokens.
    List,
    /// Revoke a token: its agents are refused from then on.
    Revoke { name: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

pub async fn account(conn: &Conn, cmd: AccountCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        AccountCmd::Create { name, role } => {
            let created = c.create_account(&name, role).await?;
            if !conn.json {
                note(format_args!(
                    "created {} account '{}'; its token (shown only now):",
                    created.account.role, created.account.name
                ));
            }
            emit(conn.json, &created, |c, out| writeln!(out, "{}", c.token))
        }
        AccountCmd::List => emit(conn.json, &c.accounts().await?, |accounts, out| {
            out.push_str(&table(
                &["ID", "NAME", "ROLE", "CREATED"],
                &[],
                accounts.iter().map(|a| {
                    [
                        a.id.to_string(),
                        a.name.clone(),
                        a.role.to_string(),
                        a.created_at.format("%Y-%m-%d %H:%M").to_string(),
                    ]
                }),
            ));
            Ok(())
        }),
        AccountCmd::Whoami => emit(conn.json, &c.whoami().await?, |a, out| {
            writeln!(out, "{} ({})", a.name, a.role)
        }),
        AccountCmd::Limit { amount } => {
            let monthly = match amount.as_str() {
                "none" => None,
                a => Some(
                    a.parse::<accelhub_domain::Money>()
                        .map_err(|e| anyhow::anyhow!(e))?,
                ),
            };
            let l = c.set_spending_limit(monthly).await?;
            emit(conn.json, &l, |l, out| match &l.monthly {
                Some(m) => writeln!(out, "monthly spending limit: {m}"),
                None => writeln!(out, "no monthly spending limit"),
            })
        }
    }
}

pub async fn agent_token(conn: &Conn, cmd: AgentTokenCmd) -> anyhow::Result<()> {
    let c = conn.client()?;
    match cmd {
        AgentTokenCmd::Create { name } => {
            let created = c.create_agent(&name).await?;
            if !conn.json {
                note(format_args!(
                    "issued agent token '{}'; the token (shown only now):",
                    created.agent.name
                ));
            }
            emit(conn.json, &created, |c, out| writeln!(out, "{}", c.token))
        }
        AgentTokenCmd::List => emit(conn.json, &c.agents().await?, |agents, out| {
            out.push_str(&table(
                &["NAME", "STATE", "CREATED"],
                &[],
                agents.iter().map(|a| {
                    [
                        a.name.clone(),
                        if a.revoked { "revoked" } else { "active" }.to_string(),
                        a.created_at.format("%Y-%m-%d %H:%M").to_string(),
                    ]
                }),
            ));
            Ok(())
        }),
        AgentTokenCmd::Revoke { name } => {
            c.revoke_agent(&name).await?;
            note(format_args!("revoked agent token '{name}'"));
            Ok(())
        }
    }
}
