//! Personal info, as both the aggregate and the profile keep it: one place for how
//! `registered` and `personal_info_changed` change it.

use chrono::NaiveDate;
use esr_schema::{PersonalInfoChanged, Registered};

pub(crate) struct PersonalInfo<'a> {
    pub name: &'a mut String,
    pub surname: &'a mut String,
    pub birth_date: &'a mut Option<NaiveDate>,
}

impl PersonalInfo<'_> {
    pub fn register(self, e: &Registered) {
        self.name.clone_from(&e.name);
        self.surname.clone_from(&e.surname);
        *self.birth_date = e.birth_date;
    }

    /// Only the fields the event names change.
    pub fn change(self, e: &PersonalInfoChanged) {
        if let Some(name) = &e.name {
            self.name.clone_from(name);
        }
        if let Some(surname) = &e.surname {
            self.surname.clone_from(surname);
        }
        if e.birth_date.is_some() {
            *self.birth_date = e.birth_date;
        }
    }
}
