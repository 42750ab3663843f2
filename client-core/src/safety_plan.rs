//! The person's own safety plan: kept only in this device's encrypted store, validated, never
//! sent to a group or the server; carried to the person's own new device in the link bundle.

use confide_protocol::group_work::SafetyPlan;

use crate::Network;
use crate::error::ClientError;
use crate::machine::ClientCore;
use crate::store::{ClientStore, T_SAFETY_PLAN};

/// The one key of the `safety_plan` tree: there is one plan per person.
pub(crate) const PLAN_KEY: &[u8] = b"plan";

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// The person's safety plan as this device holds it (empty until they write one).
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn safety_plan(&self) -> Result<SafetyPlan, ClientError> {
        Ok(self
            .db
            .get::<SafetyPlan>(T_SAFETY_PLAN, PLAN_KEY)
            .await?
            .unwrap_or_default())
    }

    /// Replaces the person's safety plan on this device. Local: never sent to anyone (a new
    /// device of theirs gets it in the link bundle).
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for a plan that breaks a limit ([`SafetyPlan::validate`]);
    /// [`ClientError::Store`] if it cannot be stored.
    pub async fn set_safety_plan(&mut self, plan: SafetyPlan) -> Result<(), ClientError> {
        let r = self.store_safety_plan(&plan);
        self.end_step(r).await
    }

    /// Keeps `plan` (in the step's batch), once it is valid.
    pub(crate) fn store_safety_plan(&mut self, plan: &SafetyPlan) -> Result<(), ClientError> {
        plan.validate()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        if plan.is_empty() {
            self.db.remove(T_SAFETY_PLAN, PLAN_KEY);
        } else {
            self.db.put(T_SAFETY_PLAN, PLAN_KEY, plan)?;
        }
        Ok(())
    }
}
