-- private.purge_closed_records: closed milestone payments, with their disputes, funding
-- attempts and processor transactions, are removed seven years after their last change; a
-- payment any of whose records is newer or still open is kept whole; the ledger is kept; the
-- guards let only the purge's deletes of old rows through; only the owner runs it.
begin;
select plan(17);

-- fixtures, as postgres: hana's project for carl, with four payments (a 1..4), each made
-- closed or open below and back-dated; triggers are off while the fixture writes history
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_project_with_milestones('hana', 'carl',
  array[10000::bigint, 20000::bigint, 30000::bigint, 40000::bigint]);
select tests.set_milestone_payment_status(tests.project_fixture_id('10000000-0000-4000-8000-000000000001', 3, n),
  case n when 3 then 'funded' else 'released' end::public.milestone_payment_status)
from generate_series(1, 4) as n;
select set_config('fixture.p' || n, tests.project_fixture_id('10000000-0000-4000-8000-000000000001', 3, n)::text, true)
from generate_series(1, 4) as n;
alter table public.disputes disable trigger user;
alter table public.funding_attempts disable trigger user;
alter table public.payment_transactions disable trigger user;
alter table public.milestone_payments disable trigger user;
-- a withdrawn dispute and a funding attempt on payments 1 and 2, and each payment's charge
insert into public.disputes (milestone_payment_id, opened_by, reason, status, resolution, resolved_at)
select current_setting('fixture.p' || n)::uuid, tests.get_supabase_uid('hana'),
  'The work was not finished', 'withdrawn', 'Withdrawn by the payer once it was', now()
from generate_series(1, 2) as n;
insert into public.funding_attempts (
  milestone_payment_id, attempt, amount_minor, currency, idempotency_key, status,
  processor_payment_method_id_lookup, processor_customer_id_lookup
)
select current_setting('fixture.p' || n)::uuid, 1, 10000 * n, 'USD', 'fund-' || n, 'succeeded',
  tests.token_lookup('pm_Retention0' || n), tests.token_lookup('cus_Retention0' || n)
from generate_series(1, 2) as n;
insert into public.payment_transactions (user_id, type, status, amount_minor, currency, processor_transaction_id)
select tests.get_supabase_uid('hana'), 'charge', 'succeeded', 10000 * n, 'USD', mp.processor_payment_intent_id
from generate_series(1, 4) as n
join public.milestone_payments as mp on mp.id = current_setting('fixture.p' || n)::uuid;
-- two fees of no payment: one closed long ago, one pending as long
insert into public.payment_transactions (user_id, type, status, amount_minor, currency, processor_transaction_id)
values
(tests.get_supabase_uid('hana'), 'fee', 'succeeded', 500, 'USD', 'pi_RetentionOldFee'),
(tests.get_supabase_uid('hana'), 'fee', 'pending', 700, 'USD', 'pi_RetentionPendingFee');
-- back-dated: everything 8 years ago, but payment 2's dispute (6 years ago) and payment 4
-- (released 2 years ago); payment 3 is still funded
update public.milestone_payments set updated_at = now() - case
  when id = current_setting('fixture.p4')::uuid then interval '2 years' else interval '8 years' end;
update public.disputes set updated_at = now() - case
  when milestone_payment_id = current_setting('fixture.p2')::uuid then interval '6 years'
  else interval '8 years' end;
update public.funding_attempts set updated_at = now() - interval '8 years';
update public.payment_transactions set updated_at = now() - interval '8 years';
alter table public.disputes enable trigger user;
alter table public.funding_attempts enable trigger user;
alter table public.payment_transactions enable trigger user;
alter table public.milestone_payments enable trigger user;
select set_config('fixture.entries', (select count(*)::text from private.ledger_entries), true);

-- outside the purge, every guard holds, even for old rows and even for the owner
select throws_ok(
  format($$delete from public.disputes where milestone_payment_id = %L$$, current_setting('fixture.p1')),
  'PT409', null,
  'outside the purge, a closed dispute past the retention is never deleted'
);
select throws_ok(
  format($$delete from public.funding_attempts where milestone_payment_id = %L$$, current_setting('fixture.p1')),
  'PT409', null,
  'outside the purge, a funding attempt past the retention is never deleted'
);
select set_config('payguard.purging_closed_records', pg_current_xact_id()::text, true);
select throws_ok(
  format($$delete from public.disputes where milestone_payment_id = %L$$, current_setting('fixture.p2')),
  'PT409', null,
  'a forged purge setting lets no row within the retention go (payment 2''s dispute is 6 years old)'
);
select set_config('payguard.purging_closed_records', '', true);

-- who may purge: its owner alone
select results_eq(
  $$select r from unnest(array['anon', 'authenticated', 'service_role', 'payment_service',
      'escrow_service', 'auditor', 'admin']) as r
    where has_function_privilege(r, 'private.purge_closed_records()', 'execute')
      or has_function_privilege(r, 'private.schedule_closed_records_purge()', 'execute')$$,
  $$select null::text where false$$,
  'no API role executes the purge or its scheduling'
);

-- the purge
select is(
  private.purge_closed_records() -> 'removed',
  '{"notifications": 6, "refund_obligations": 0, "processor_inconsistencies": 0,
    "funding_attempts": 1, "disputes": 1, "milestone_payments": 1, "payment_transactions": 2}'::jsonb,
  'the purge removes payment 1 with its dispute, attempt, charge and notifications, and the old fee'
);
select is(
  (select count(*)::int from public.milestone_payments where id = current_setting('fixture.p1')::uuid),
  0,
  'the closed payment past the retention is gone'
);
select is(
  (select count(*)::int from public.disputes where milestone_payment_id = current_setting('fixture.p1')::uuid)
  + (select count(*)::int from public.funding_attempts where milestone_payment_id = current_setting('fixture.p1')::uuid),
  0,
  'its dispute and funding attempt are gone with it'
);
select results_eq(
  format($$select id::text from public.milestone_payments where id in (%L, %L, %L) order by id$$,
    current_setting('fixture.p2'), current_setting('fixture.p3'), current_setting('fixture.p4')),
  format($$values (%L), (%L), (%L)$$,
    current_setting('fixture.p2'), current_setting('fixture.p3'), current_setting('fixture.p4')),
  'a payment with a record within the retention, an open payment and a recent one are kept'
);
select is(
  (select count(*)::int from public.disputes where milestone_payment_id = current_setting('fixture.p2')::uuid)
  + (select count(*)::int from public.funding_attempts where milestone_payment_id = current_setting('fixture.p2')::uuid),
  2,
  'a payment kept is kept whole: its old funding attempt stays with its newer dispute'
);
select results_eq(
  $$select processor_transaction_id from public.payment_transactions where type = 'fee'$$,
  $$values ('pi_RetentionPendingFee')$$,
  'a processor transaction of no payment goes once closed past the retention; a pending one stays'
);
select is(
  (select count(*)::int from public.payment_transactions where type = 'charge'),
  3,
  'the charges of the payments kept stay'
);
select is(
  (select count(*)::text from private.ledger_entries),
  current_setting('fixture.entries'),
  'the ledger is never purged: the balances are kept for ever'
);
select results_eq(
  $$select operation, entity_type, new_values -> 'removed' ->> 'milestone_payments', success
    from public.payment_audit_logs where operation = 'PURGE' and entity_type = 'closed_records'$$,
  $$values ('PURGE'::varchar, 'closed_records'::varchar, '1', true)$$,
  'the run is audited with what it removed'
);
select is(
  (select count(*)::int from public.payment_audit_logs
    where operation = 'DELETE' and entity_type = 'milestone_payments'
      and entity_id = current_setting('fixture.p1')),
  1,
  'each removed record leaves its audit row'
);
select is(
  private.purge_closed_records() -> 'removed' ->> 'milestone_payments',
  '0',
  'a second run finds nothing more to remove'
);
select is(
  current_setting('payguard.purging_closed_records', true),
  pg_current_xact_id()::text,
  'the purge''s mark lasts until the end of its transaction only (a setting local to it)'
);

-- scheduling: this test database has no pg_cron
select is(
  private.schedule_closed_records_purge(),
  'pg_cron is not installed in this database: nothing scheduled; purge with `payguard retention purge`',
  'without pg_cron, nothing is scheduled and the answer says how to purge'
);

select * from finish();
rollback;
