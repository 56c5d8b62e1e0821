-- Sealing on a schedule: where pg_cron is not installed (as in this test database), the
-- deploy schedules nothing and says so; the backlog is reported; the backlog check raises one
-- audit_seal_backlog alert once the oldest unsealed row passes the threshold; and no API or
-- staff role may run any of it. tests/py/test_audit_schedule.py proves that pg_cron seals a
-- fresh deploy with no manual step.
begin;
select plan(33);

select tests.let_roles_call_pgtap();
select tests.create_supabase_user('alice');

-- no pg_cron here: nothing is scheduled, and the answer says what to run instead
select hasnt_schema('cron', 'this test database has no pg_cron');
select is(
  private.schedule_audit_sealer(),
  'pg_cron is not installed in this database: nothing scheduled; seal with '
  || '`payguard audit seal --follow`',
  'without pg_cron, scheduling the sealer does nothing and says how to seal'
);
select is(
  private.schedule_lapsed_reviews(),
  'pg_cron is not installed in this database: nothing scheduled; run '
  || 'select private.release_lapsed_reviews() from a scheduler of your own',
  'nor is the release of lapsed milestone reviews scheduled'
);

-- the backlog, as the log holds it
select is(
  (select unsealed_rows from private.audit_seal_status()),
  (
    select count(*) from public.payment_audit_logs
    where seq > (select through_seq from private.audit_chain_head())
  ),
  'status counts the rows after the chain head'
);
select ok(
  (select unsealed_rows from private.audit_seal_status()) >= 1,
  'alice''s sign-up is waiting to be sealed'
);
select is(
  (select oldest_unsealed_at from private.audit_seal_status()),
  (
    select min(timestamp) from public.payment_audit_logs
    where seq > (select through_seq from private.audit_chain_head())
  ),
  'status gives the time the oldest unsealed row was written'
);
select is(
  (select sealed_through from private.audit_seal_status()),
  (select through_seq from private.audit_chain_head()),
  'status gives the chain head'
);
select is(
  (select last_sealed_at from private.audit_seal_status()),
  (select max(sealed_at) from private.audit_seals),
  'status gives the last seal'
);
select is(
  (select alert_after_seconds from private.audit_seal_status()), 300,
  'the alert threshold is 300 s by default'
);
select is(
  (select scheduled_jobs from private.audit_seal_status()), '{}'::text [],
  'no pg_cron job is reported here'
);

-- the backlog check: nothing while the oldest row is younger than the threshold
update private.settings set value = '315360000' where key = 'audit_seal_alert_seconds';
select is(private.check_audit_seal_backlog(), false, 'a backlog under the threshold: no alert');
select is(
  (select count(*)::int from public.security_alerts where kind = 'audit_seal_backlog'), 0,
  'no audit_seal_backlog alert is written'
);

-- past the threshold: one alert, with the figures
update private.settings set value = '0' where key = 'audit_seal_alert_seconds';
select is(private.check_audit_seal_backlog(), true, 'a backlog past the threshold: an alert');
select is(
  (select count(*)::int from public.security_alerts where kind = 'audit_seal_backlog'), 1,
  'one audit_seal_backlog alert is written'
);
select is(
  (
    select (user_id, operation, details ->> 'unsealed_rows', details ->> 'alert_after_seconds')
    from public.security_alerts where kind = 'audit_seal_backlog'
  ),
  (
    null::uuid, 'audit.seal'::text,
    (select unsealed_rows::text from private.audit_seal_status()), '0'::text
  ),
  'the alert concerns no user and gives the backlog and the threshold'
);
select is(
  private.check_audit_seal_backlog(), false,
  'within the threshold of the last alert, the check raises no second one'
);
select is(
  (select count(*)::int from public.security_alerts where kind = 'audit_seal_backlog'), 1,
  'still one audit_seal_backlog alert'
);

-- no API or staff role runs the sealer's schedule, its status or its check
create function tests.schedule_routines() returns setof regprocedure
language sql
as $$
  select unnest(array[
    'private.schedule_audit_sealer()'::regprocedure,
    'private.audit_seal_status()'::regprocedure,
    'private.check_audit_seal_backlog()'::regprocedure,
    'private.schedule_lapsed_reviews()'::regprocedure
  ])
$$;
select is(
  (
    select array_agg(format('%s %s', r.role_name, routine) order by r.role_name, routine::text)
    from
      unnest(array[
        'anon', 'authenticated', 'service_role', 'payment_service', 'escrow_service', 'admin',
        'auditor'
      ]) as r (role_name),
      tests.schedule_routines() as routine
    where has_function_privilege(r.role_name, routine, 'execute')
  ),
  null,
  'no API or staff role may execute the schedule, status or check'
);
select is(
  (
    select array_agg(routine::text order by routine::text)
    from tests.schedule_routines() as routine
    where has_function_privilege('postgres', routine, 'execute')
  ),
  array[
    'private.audit_seal_status()', 'private.check_audit_seal_backlog()',
    'private.schedule_audit_sealer()', 'private.schedule_lapsed_reviews()'
  ],
  'the owner, whose pg_cron jobs run them, may execute each'
);

-- the same refusals, as each role would meet them
create function tests.schedule_refusals(role_name text) returns setof text
language plpgsql
as $$
begin
  if role_name in ('anon') then
    perform tests.clear_authentication();
  elsif role_name in ('authenticated', 'admin', 'auditor') then
    perform tests.authenticate_as('alice', aal => 'aal2', role_name => role_name);
  else
    perform tests.authenticate_as_service(role_name);
  end if;
  return next throws_ok(
    'select private.audit_seal_status()', '42501', null::text,
    role_name || ' cannot read the sealing status'
  );
  return next throws_ok(
    'select private.check_audit_seal_backlog()', '42501', null::text,
    role_name || ' cannot run the backlog check'
  );
  execute 'reset role';
end
$$;
grant execute on function tests.schedule_refusals(text)
to anon, authenticated, service_role, payment_service, escrow_service, admin, auditor;

select tests.schedule_refusals('anon');
select tests.schedule_refusals('authenticated');
select tests.schedule_refusals('admin');
select tests.schedule_refusals('auditor');
select tests.schedule_refusals('payment_service');
select tests.schedule_refusals('escrow_service');
select tests.schedule_refusals('service_role');
reset role;

select * from finish();
rollback;
