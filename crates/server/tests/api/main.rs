//! The HTTP suite: a real server on a random loopback port over a real SQLite
//! file or PostgreSQL schema. Every test runs on both backends.

mod artifacts;
mod browser;
mod contracts;
mod delivery;
mod desk;
mod errors;
mod fake_llm;
mod file_pages;
mod files;
mod fixtures;
mod generation;
mod helpers;
mod hook;
mod hostile;
mod idempotency;
mod isolation;
mod journeys;
mod llm;
mod mail;
mod pages;
mod people;
mod pipelines;
mod playbook_pages;
mod playbooks;
mod review;
mod scenarios;
mod search;
mod service;
mod smtp;
mod webhooks;
mod work;
