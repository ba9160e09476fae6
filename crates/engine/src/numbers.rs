//! A tenant's pool of virtual numbers.

use maskline_core::{Area, Number, NumberUsage, TenantId};
use maskline_store::{Page, PoolNumber, Write};

use crate::{Engine, Error, Result, now, settle};

/// One number of an import request, already parsed.
#[derive(Clone, Debug)]
pub struct NumberEntry {
    pub number: Number,
    pub area: Option<Area>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImportOutcome {
    pub imported: usize,
    /// Already in this tenant's pool; left as they were.
    pub existing: usize,
}

impl Engine {
    /// Adds numbers to a pool, all or nothing: one number that belongs to
    /// another tenant refuses the whole request.
    pub async fn import_numbers(
        &self,
        tenant: TenantId,
        entries: Vec<NumberEntry>,
    ) -> Result<ImportOutcome> {
        let created_at = now();
        let mut fresh = Vec::with_capacity(entries.len());
        let mut existing = 0;
        {
            let index = self.index.read();
            let mut seen = std::collections::HashSet::with_capacity(entries.len());
            for (i, e) in entries.into_iter().enumerate() {
                let refuse = |reason| Error::ImportRefused {
                    entry: i,
                    number: e.number.to_string(),
                    reason,
                };
                match index.check_import(tenant, e.number) {
                    Ok(true) => existing += 1,
                    Ok(false) if seen.insert(e.number) => fresh.push(PoolNumber {
                        tenant,
                        area: e.area.or_else(|| e.number.derived_area()),
                        number: e.number,
                        created_at,
                    }),
                    Ok(false) => existing += 1,
                    Err(reason) => return Err(refuse(reason)),
                }
            }
        }
        if fresh.is_empty() {
            return Ok(ImportOutcome {
                imported: 0,
                existing,
            });
        }
        let imported = fresh.len();
        let ack = self.store.enqueue(Write::ImportNumbers(fresh.clone()));
        let index = self.index.clone();
        // Memory follows the durable write even if the caller has gone.
        let outcome = settle(ack, move |outcome| {
            if outcome.is_ok() {
                let mut index = index.write();
                for n in &fresh {
                    if let Err(e) = index.add_number(tenant, n.number, n.area.as_ref()) {
                        tracing::error!(error = %e, number = %n.number.masked(), "stored number not added to the index");
                    }
                }
            }
        })
        .await;
        match outcome {
            Ok(()) => {}
            // Another tenant took one of them between our check and the write.
            Err(maskline_store::Error::Conflict(_)) => {
                return Err(maskline_core::Error::NumberTaken.into());
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(%tenant, imported, existing, "numbers imported");
        Ok(ImportOutcome { imported, existing })
    }

    /// A page of the pool, each number with its current usage.
    pub async fn numbers(
        &self,
        tenant: TenantId,
        page: Page<Number>,
    ) -> Result<Vec<(PoolNumber, NumberUsage)>> {
        let rows = self.store.numbers(tenant, page).await?;
        let index = self.index.read();
        Ok(rows
            .into_iter()
            .map(|n| {
                let usage = index.number_usage(tenant, n.number).unwrap_or(NumberUsage {
                    mode: None,
                    bindings: 0,
                });
                (n, usage)
            })
            .collect())
    }

    /// Takes a number out of the pool once no live binding uses it.
    pub async fn retire_number(&self, tenant: TenantId, number: Number) -> Result<()> {
        let (ack, area) = {
            let mut index = self.index.write();
            let area = index
                .number_area(tenant, number)
                .ok_or(maskline_core::Error::NumberNotFound)?;
            index.retire_number(tenant, number, now())?;
            (
                self.store.enqueue(Write::RetireNumber { tenant, number }),
                area,
            )
        };
        let index = self.index.clone();
        settle(ack, move |outcome| {
            if outcome.is_err() {
                // Put it back: the store still has it.
                let _ = index.write().add_number(tenant, number, area.as_ref());
            }
        })
        .await?;
        tracing::info!(%tenant, number = %number.masked(), "number retired");
        Ok(())
    }
}
