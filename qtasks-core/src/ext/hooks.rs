//! [`Hooks`]: an app's plugins and event handlers together, and the enqueue trigger points
//! (`add_task` before and after the broker). The execution's trigger points are in the one
//! execution pipeline (`execute/`). Each point starts with one emptiness check, so an app
//! without plugins or event handlers pays one branch per point and allocates nothing.

use crate::app::handle::App;
use crate::backend::NewTask;
use crate::ext::events::Events;
use crate::ext::plugin::{Plugins, Trigger};
use crate::task::record::Task;

/// An app's plugins and event handlers.
#[derive(Clone, Default, Debug)]
pub(crate) struct Hooks {
    pub(crate) plugins: Plugins,
    pub(crate) events: Events,
}

impl Hooks {
    /// Whether anything is registered.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.plugins.is_empty() && self.events.is_empty()
    }
}

/// `add_task`, before the broker: app then broker triggers.
pub(crate) async fn before_enqueue(app: &App, task: &mut NewTask) {
    let plugins = &app.hooks().plugins;
    plugins.fire(&mut Trigger::AddTaskBefore { task }).await;
    plugins.fire(&mut Trigger::BrokerAddBefore { task }).await;
}

/// `add_task`, after the broker: broker then app triggers.
pub(crate) async fn after_enqueue(app: &App, new: &NewTask, task: &mut Task) {
    let plugins = &app.hooks().plugins;
    plugins
        .fire(&mut Trigger::BrokerAddAfter { task: new })
        .await;
    plugins.fire(&mut Trigger::AddTaskAfter { task }).await;
}
