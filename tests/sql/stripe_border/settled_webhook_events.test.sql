-- A refused or failed webhook event is settled by operations once, in writing: an admin at
-- aal2 records a resolved inconsistency naming it (settle_webhook_event), which takes it off
-- `payguard reconcile`'s list. An event whose refusal opened an inconsistency is settled by
-- recovering or resolving that one, never around it; an applied event has nothing to settle.
-- No other role may settle one, and every refusal is recorded.
begin;
select plan(17);

select tests.let_roles_call_pgtap('payment_service', 'admin', 'auditor');

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('aud');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
select tests.create_project_payments('hana', 'carl', 1);
select tests.authenticate_as('hana');
update public.milestone_payments set status = 'canceled'
where id = '30000000-0000-4000-8000-000000000001';
reset role;

-- three events: one refused that moves no money, one refused money event, one applied
select tests.authenticate_as_service('payment_service');
select set_config('fixture.foreign', public.apply_stripe_event(
  tests.stripe_event('account.updated', '{"id": "acct_1Other01", "object": "account",
    "payouts_enabled": true}') || jsonb_build_object('account', tests.token_lookup('acct_1Mine001'))) ->> 'event_id', true);
select set_config('fixture.charge', public.apply_stripe_event(
  tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_Late0001', '30000000-0000-4000-8000-000000000001', 10000)))
  ->> 'event_id', true);
select set_config('fixture.ignored', public.apply_stripe_event(
  tests.stripe_event('customer.created', '{"id": "cus_Any0001", "object": "customer"}'))
  ->> 'event_id', true);
reset role;
select results_eq(
  $$select status::text from public.webhook_events
    where id in (current_setting('fixture.foreign'), current_setting('fixture.charge'))
    order by received_at, id$$,
  $$values ('refused'), ('refused')$$,
  'the foreign account.updated and the late charge are refused'
);

-- no one but an admin may settle one
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  format($$select public.settle_webhook_event(%L, 'Nothing to do: not our account.')$$,
    current_setting('fixture.foreign')),
  '42501', 'permission denied for function settle_webhook_event',
  'a user may not settle an event'
);
reset role;
select tests.authenticate_as('aud', aal => 'aal2', role_name => 'auditor');
select throws_ok(
  format($$select public.settle_webhook_event(%L, 'Nothing to do: not our account.')$$,
    current_setting('fixture.foreign')),
  '42501', 'permission denied for function settle_webhook_event',
  'nor an auditor'
);
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  format($$select public.settle_webhook_event(%L, 'Nothing to do: not our account.')$$,
    current_setting('fixture.foreign')),
  '42501', 'permission denied for function settle_webhook_event',
  'nor payment_service'
);
reset role;

-- an admin: at aal2, in writing, an event that is refused or failed and that nothing settles
select tests.authenticate_as('ada', aal => 'aal1', role_name => 'admin');
select throws_ok(
  format($$select tests.raise_if_refused(public.settle_webhook_event(%L,
    'Nothing to do: not our account.'))$$, current_setting('fixture.foreign')),
  'PT403', 'settling a webhook event needs MFA (aal2)',
  'an admin at aal1 may not'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$select tests.raise_if_refused(public.settle_webhook_event(%L, 'ok'))$$,
    current_setting('fixture.foreign')),
  'PT422',
  format('settling webhook event %s needs a written resolution of 10 to 2000 characters',
    current_setting('fixture.foreign')),
  'a resolution is written'
);
select throws_ok(
  $$select tests.raise_if_refused(public.settle_webhook_event('evt_Unknown0001',
    'Nothing to do: not our account.'))$$,
  'PT404', 'no webhook event evt_Unknown0001',
  'an unknown event is not found'
);
select throws_ok(
  format($$select tests.raise_if_refused(public.settle_webhook_event(%L,
    'Nothing to do: it was ignored.'))$$, current_setting('fixture.ignored')),
  'PT409',
  format('webhook event %s was ignored: there is nothing to settle',
    current_setting('fixture.ignored')),
  'an event that was not refused or failed has nothing to settle'
);
select throws_ok(
  format($$select tests.raise_if_refused(public.settle_webhook_event(%L,
    'Refunded by hand, so nothing to do.'))$$, current_setting('fixture.charge')),
  'PT409', null,
  'a refused money event is settled through the inconsistency it opened, not around it'
);
select matches(
  public.settle_webhook_event(current_setting('fixture.charge'),
    'Refunded by hand, so nothing to do.') ->> 'message',
  '^webhook event evt_\w+ is named by open processor inconsistency [0-9a-f-]+ \(charge_refused\): recover or resolve that one$',
  'and the refusal names that inconsistency'
);
select results_eq(
  format($$select a ->> 'kind', a ->> 'processor_object_id', a ->> 'webhook_event_id',
      a ->> 'resolution', (a ->> 'resolved_at') is not null
    from public.settle_webhook_event(%L, 'Not our connected account: a test account of the '
      'processor, nothing to do.') as a$$, current_setting('fixture.foreign')),
  format($$values ('webhook_event_refused', %1$L, %1$L, 'Not our connected account: a test '
    'account of the processor, nothing to do.', true)$$, current_setting('fixture.foreign')),
  'an admin settles the refused event in writing: a resolved inconsistency names it'
);
select throws_ok(
  format($$select tests.raise_if_refused(public.settle_webhook_event(%L,
    'Settled again, differently.'))$$, current_setting('fixture.foreign')),
  'PT409', null,
  'an event is settled once'
);
-- the charge's inconsistency resolved in writing settles its event too
select ok(
  (public.resolve_processor_inconsistency(
    (select id from public.processor_inconsistencies where processor_object_id = 'pi_Late0001'),
    'Refunded by hand from the dashboard.') ->> 'resolved_at') is not null,
  'resolving the late charge''s inconsistency'
);
select matches(
  public.settle_webhook_event(current_setting('fixture.charge'),
    'Refunded by hand, so nothing to do.') ->> 'message',
  '^webhook event evt_\w+ was settled at .+ by processor inconsistency [0-9a-f-]+$',
  'settles its event: there is nothing more to settle'
);
reset role;

select results_eq(
  $$select e.id from public.webhook_events as e where e.status in ('refused', 'failed')
    and not exists (select from public.processor_inconsistencies as i
      where i.webhook_event_id = e.id and i.resolution is not null)$$,
  $$select null::text where false$$,
  'no refused event is left unsettled'
);
select is(
  (select count(*)::int from public.payment_audit_logs
    where operation = 'settle_webhook_event' and not success),
  2,
  'each refusal answered to an admin is recorded in the audit trail (those raised again by '
  'raise_if_refused roll back with throws_ok''s savepoint)'
);
select is(
  (select count(*)::int from public.processor_inconsistencies where kind like 'webhook_event_%'),
  1,
  'and only the settlement made a record'
);

select * from finish();
rollback;
