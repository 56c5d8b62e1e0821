-- Processor inconsistencies: a charge the processor made that the database refused (or could
-- not be reached to record) is recorded once, where operations read it (admin, auditor; not
-- users); payment_service recovers it explicitly: fund the payment while it is still fundable,
-- else mark the charge to be refunded, and the processor's charge.refunded resolves it. The
-- record is never deleted and what was found never changes; staff resolve the rest in writing.
begin;
select plan(30);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for p1 (canceled) and p2 (pending)
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('aud');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
select tests.create_project_payments('hana', 'carl', 2);
select tests.authenticate_as('hana');
update public.milestone_payments set status = 'canceled'
where id = '30000000-0000-4000-8000-000000000001';
reset role;

-- the processor charged for the canceled p1: the database refuses, the charge is recorded
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_P1late', '30000000-0000-4000-8000-000000000001', 10000))) ->> 'status',
  'refused',
  'a success for a canceled payment is refused'
);
select results_eq(
  $$select kind, milestone_payment_id::text, amount_minor, currency::text, recovery, resolution
    from public.processor_inconsistencies where processor_object_id = 'pi_P1late'$$,
  $$values ('charge_refused', '30000000-0000-4000-8000-000000000001', 10000::bigint, 'USD',
    null::text, null::text)$$,
  'and its charge is recorded as an open inconsistency'
);
-- the database was unreachable when p2 was charged: the function records it afterwards
select set_config('fixture.i2', public.record_processor_inconsistency(
  'charge_unrecorded', 'pi_P2lost', '30000000-0000-4000-8000-000000000002', 20000, 'USD',
  'The database could not be reached after the charge') ->> 'id', true);
select is(
  public.record_processor_inconsistency(
    'charge_unrecorded', 'pi_P2lost', '30000000-0000-4000-8000-000000000002', 20000, 'USD',
    'The database could not be reached after the charge') ->> 'id',
  current_setting('fixture.i2'),
  'recording the same inconsistency again returns the first record'
);
select is(
  (select count(*)::int from public.processor_inconsistencies),
  2,
  'two inconsistencies in all'
);
select throws_ok(
  $$update public.processor_inconsistencies set amount_minor = 1 where processor_object_id = 'pi_P2lost'$$,
  '42501', 'permission denied for table processor_inconsistencies',
  'payment_service cannot rewrite what was found'
);
select throws_ok(
  $$delete from public.processor_inconsistencies$$,
  '42501', 'permission denied for table processor_inconsistencies',
  'nor delete an inconsistency'
);

-- recovery: p2 is still fundable, so its charge funds it
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.recover_processor_inconsistency(current_setting('fixture.i2')::uuid) as a$$,
  $$values ('fund', true)$$,
  'the charge of a payment still fundable funds it'
);
select results_eq(
  $$select status::text, processor_payment_intent_id from public.milestone_payments
    where id = '30000000-0000-4000-8000-000000000002'$$,
  $$values ('funded', 'pi_P2lost')$$,
  'p2 is funded with the charge'
);
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.recover_processor_inconsistency(current_setting('fixture.i2')::uuid) as a$$,
  $$values ('fund', true)$$,
  'recovering it again returns the same decision'
);
reset role;
select is(
  (select count(*)::int from private.ledger_transfers
    where reference_id = '30000000-0000-4000-8000-000000000002' and code = 'milestone_funding'),
  1,
  'and funds it once'
);

-- recovery: p1 was canceled, so its charge is to be refunded; the refund resolves it
select tests.authenticate_as_service('payment_service');
select set_config('fixture.i1',
  (select id::text from public.processor_inconsistencies where processor_object_id = 'pi_P1late'), true);
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean, a ->> 'payment_intent_id',
      (a ->> 'amount_minor')::bigint, a ->> 'refund_idempotency_key'
    from public.recover_processor_inconsistency(current_setting('fixture.i1')::uuid) as a$$,
  $$values ('refund', false, 'pi_P1late', 10000::bigint,
    'processor_inconsistency:' || current_setting('fixture.i1') || ':refund')$$,
  'the charge of a canceled payment is to be refunded, with a key derived from the record'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000001'),
  'canceled',
  'and p1 stays canceled'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
      'id', 'ch_P1late', 'object', 'charge', 'payment_intent', 'pi_P1late', 'amount', 10000,
      'amount_refunded', 5000, 'currency', 'usd'))) as a$$,
  $$values ('refused', 'PT422')$$,
  'a partial refund does not settle it'
);
select is(
  public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
    'id', 'ch_P1late', 'object', 'charge', 'payment_intent', 'pi_P1late', 'amount', 10000,
    'amount_refunded', 10000, 'currency', 'usd'))) ->> 'status',
  'processed',
  'the processor''s charge.refunded for the whole charge is applied'
);
select results_eq(
  $$select recovery, resolution like 'Refunded by the processor: charge ch_P1late%', resolved_at = now()
    from public.processor_inconsistencies where id = current_setting('fixture.i1')::uuid$$,
  $$values ('refund', true, true)$$,
  'and resolves the inconsistency'
);

-- who reads them: operations, not users
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  'select count(*) from public.processor_inconsistencies',
  '42501', 'permission denied for table processor_inconsistencies',
  'a user cannot read inconsistencies'
);
select throws_ok(
  $$select public.record_processor_inconsistency('charge_refused', 'pi_Mine01', null, 1, 'USD', 'x')$$,
  '42501', 'permission denied for function record_processor_inconsistency',
  'nor record one'
);
select throws_ok(
  $$select public.recover_processor_inconsistency(current_setting('fixture.i2')::uuid)$$,
  '42501', 'permission denied for function recover_processor_inconsistency',
  'nor recover one'
);
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select is(
  (select count(*)::int from public.processor_inconsistencies),
  3,
  'an auditor reads them'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (select array_agg(kind || ' ' || processor_object_id) from public.processor_inconsistencies
    where resolution is null),
  array['refund_refused ch_P1late'],
  'an admin reads them: only the refused partial refund is open'
);
select throws_ok(
  $$insert into public.processor_inconsistencies (kind, processor_object_id) values ('made_up', 'pi_Adm01')$$,
  '42501', 'permission denied for table processor_inconsistencies',
  'an admin does not invent one'
);

-- what no recovery settles, staff settle in writing, with MFA, once
reset role;
select tests.authenticate_as_service('payment_service');
select set_config('fixture.i3', public.record_processor_inconsistency(
  'chargeback_refused', 'du_Late01', '30000000-0000-4000-8000-000000000002', 20000, 'USD',
  'Chargeback after the payee was paid') ->> 'id', true);
select throws_ok(
  $$select public.recover_processor_inconsistency(current_setting('fixture.i3')::uuid)$$,
  'PT409',
  format('processor inconsistency %s (chargeback_refused) is not a charge of a milestone payment: operations settle it',
    current_setting('fixture.i3')),
  'a chargeback is not recovered automatically'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal1', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_processor_inconsistency(
    current_setting('fixture.i3')::uuid, 'Recovered from the contractor by invoice 2026-118.'))$$,
  'PT403', 'resolving a processor inconsistency needs MFA (aal2)',
  'resolving one needs aal2'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_processor_inconsistency(
    current_setting('fixture.i3')::uuid, '....'))$$,
  'PT422',
  format('resolving processor inconsistency %s needs a written resolution of 10 to 2000 characters',
    current_setting('fixture.i3')),
  'and a written resolution'
);
select ok(
  (public.resolve_processor_inconsistency(current_setting('fixture.i3')::uuid,
    'Recovered from the contractor by invoice 2026-118.') ->> 'resolved_at') is not null,
  'an admin at aal2 resolves it in writing'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_processor_inconsistency(
    current_setting('fixture.i3')::uuid, 'Another story told afterwards.'))$$,
  'PT409', null,
  'a resolution is set once'
);
reset role;

-- A detail the card-data guard refuses does not lose the report: an error's text joining
-- digits to an id (here a SQLSTATE after a withdrawal's id, read as a card number) is
-- recorded as a marker; a card number in another column is still refused.
select tests.authenticate_as_service('payment_service');
select is(
  public.record_processor_inconsistency(
    'transfer_unrecorded', 'tr_Refused01', null, 5000, 'USD',
    'withdrawal b1a23145-8932-4147-bd21-98a2673b9e67: 42501: permission denied for function '
    || 'record_withdrawal_transfer') ->> 'detail',
  '[removed: it held card data]',
  'a detail the guard refuses is recorded as a marker'
);
select is(
  public.record_processor_inconsistency(
    'transfer_unrecorded', 'tr_Refused02', null, 5000, 'USD',
    'card 4111 1111 1111 1111 in an error') ->> 'detail',
  '[removed: it held card data]',
  'a card number in a detail too'
);
select is(
  public.record_processor_inconsistency(
    'transfer_unrecorded', 'tr_Kept03', null, 5000, 'USD',
    'permission denied for function record_withdrawal_transfer (withdrawal '
    || 'b1a23145-8932-4147-bd21-98a2673b9e67)') ->> 'detail',
  'permission denied for function record_withdrawal_transfer (withdrawal '
  || 'b1a23145-8932-4147-bd21-98a2673b9e67)',
  'a detail that names the id apart from digits is kept as it is'
);
select throws_ok(
  $$select public.record_processor_inconsistency(
    'transfer_unrecorded', '4111 1111 1111 1111', null, 5000, 'USD', 'a detail')$$,
  'PT422', null,
  'a card number in another column is refused, the report with it'
);

select * from finish();
rollback;
