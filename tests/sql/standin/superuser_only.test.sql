-- Migrations run as postgres, which is not a superuser: statements that need one fail here
-- just as they would on Supabase.
begin;
select plan(6);

select throws_ok(
  'alter role anon bypassrls', '42501', 'must be superuser to change bypassrls attribute',
  'postgres cannot give a role BYPASSRLS'
);
select throws_ok(
  'create role sneaky superuser', '42501', 'must be superuser to create superusers',
  'postgres cannot create a superuser'
);
select throws_ok(
  'create extension file_fdw', '42501', 'permission denied to create extension "file_fdw"',
  'postgres cannot create an untrusted extension'
);
select throws_ok(
  'set local session_replication_role = replica', '42501',
  'permission denied to set parameter "session_replication_role"',
  'postgres cannot turn triggers off with session_replication_role'
);
select throws_ok(
  $$create function public.noop_event() returns event_trigger language plpgsql as 'begin end';
    create event trigger noop on ddl_command_start execute function public.noop_event()$$,
  '42501', 'permission denied to create event trigger "noop"',
  'postgres cannot create an event trigger'
);
select lives_ok(
  'create role payguard_probe_role nologin', 'postgres can create an ordinary role (CREATEROLE)'
);

select * from finish();
rollback;
