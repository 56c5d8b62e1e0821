-- public.disputes, for every role of the access matrix and every command: a party to a
-- funded milestone payment opens a dispute, which puts the payment in dispute; the parties
-- read it; only admin resolves it, and the database records who did and when; staff and
-- backends read all; nobody deletes.
begin;
select plan(60);

-- fixture, as the owner of the tables (postgres, which bypasses RLS)
-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
select tests.create_supabase_user('dora', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('audrey');

-- hana's kitchen, built by carl; sam's roof, built by dora
insert into public.projects (id, owner_id, contractor_id, title)
values
('10000000-0000-0000-0000-000000000001', tests.get_supabase_uid('hana'),
  tests.get_supabase_uid('carl'), 'Kitchen remodel'),
('10000000-0000-0000-0000-000000000002', tests.get_supabase_uid('sam'),
  tests.get_supabase_uid('dora'), 'Roof repair');
-- milestones 01 to 07 are hana's, 08 is sam's; payment NN pays milestone NN
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
select
  format('20000000-0000-0000-0000-0000000000%s', to_char(n, 'FM00'))::uuid,
  case when n = 8 then '10000000-0000-0000-0000-000000000002'::uuid
  else '10000000-0000-0000-0000-000000000001'::uuid end,
  n, format('Step %s', n), 50000, 'USD'
from generate_series(1, 8) as n;
insert into public.milestone_payments (id, milestone_id, payer_id)
select
  format('30000000-0000-0000-0000-0000000000%s', to_char(n, 'FM00'))::uuid,
  format('20000000-0000-0000-0000-0000000000%s', to_char(n, 'FM00'))::uuid,
  tests.get_supabase_uid(case when n = 8 then 'sam' else 'hana' end)
from generate_series(1, 8) as n;

-- the escrow of both projects; no hold period
insert into public.escrow_accounts (user_id, project_id, currency)
values
(tests.get_supabase_uid('hana'), '10000000-0000-0000-0000-000000000001', 'USD'),
(tests.get_supabase_uid('sam'), '10000000-0000-0000-0000-000000000002', 'USD');
update private.settings set value = '0' where key = 'escrow_hold_seconds';

-- Each payment starts from its state, its money moved along the legal path by the owner
-- (milestone_payment_transitions.test.sql takes each legal path, as its actor, once):
--   01, 02, 05 funded; 03 pending; 04, 07, 08 disputed; 06 released
select tests.set_milestone_payment_status(
  format('30000000-0000-0000-0000-0000000000%s', s.nn)::uuid,
  s.status::public.milestone_payment_status
)
from (
  values
  ('01', 'funded'), ('02', 'funded'), ('05', 'funded'), ('04', 'disputed'), ('07', 'disputed'),
  ('08', 'disputed'), ('06', 'released')
) as s (nn, status);
-- the open disputes that put 04, 07 and 08 in dispute (the payments already are)
alter table public.disputes disable trigger dispute_milestone_payment;
insert into public.disputes (id, milestone_payment_id, opened_by, reason)
values
('40000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000004',
  tests.get_supabase_uid('hana'), 'Cabinet doors do not close'),
('40000000-0000-0000-0000-000000000002', '30000000-0000-0000-0000-000000000008',
  tests.get_supabase_uid('sam'), 'Roof still leaks'),
('40000000-0000-0000-0000-000000000003', '30000000-0000-0000-0000-000000000007',
  tests.get_supabase_uid('carl'), 'Payment held too long');
alter table public.disputes enable trigger dispute_milestone_payment;

-- as an anonymous request: nothing at all
select tests.clear_authentication();
select throws_ok(
  $$select * from public.disputes$$,
  '42501', 'permission denied for table disputes',
  'anon cannot read disputes'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000005', 'Anonymous complaint')$$,
  '42501', 'permission denied for table disputes',
  'anon cannot open a dispute'
);
select throws_ok(
  $$update public.disputes set status = 'withdrawn'
    where id = '40000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'anon cannot update a dispute'
);
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'anon cannot delete a dispute'
);

-- as the payee, carl, at aal1
reset role;
select tests.authenticate_as('carl');
select lives_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000001', 'Work approved but not paid')$$,
  'the payee opens a dispute over a funded payment'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'),
  'disputed',
  'opening the dispute put the payment in dispute'
);
select results_eq(
  $$select opened_by, status::text, outcome::text, resolved_by, resolved_at
    from public.disputes where milestone_payment_id = '30000000-0000-0000-0000-000000000001'$$,
  $$values (tests.get_supabase_uid('carl'), 'open', null::text, null::uuid, null::timestamptz)$$,
  'the new dispute is open, opened by the payee, and not resolved'
);
select is(
  (select count(*)::int from public.disputes where id = '40000000-0000-0000-0000-000000000001'),
  1,
  'the payee reads a dispute the payer opened over his payment'
);
select is(
  (select count(*)::int from public.disputes where id = '40000000-0000-0000-0000-000000000002'),
  0,
  'the payee cannot read a dispute over someone else''s payment'
);
select throws_ok(
  format(
    $$insert into public.disputes (milestone_payment_id, reason, opened_by)
      values ('30000000-0000-0000-0000-000000000005', 'In her name', %L)$$,
    tests.get_supabase_uid('hana')
  ),
  '42501', 'permission denied for table disputes',
  'the payee cannot open a dispute in another user''s name (opened_by is not insertable)'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason, status)
    values ('30000000-0000-0000-0000-000000000005', 'Already settled', 'resolved')$$,
  '42501', 'permission denied for table disputes',
  'the payee cannot open a dispute already resolved (status is not insertable)'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason, outcome)
    values ('30000000-0000-0000-0000-000000000005', 'Pay me', 'release')$$,
  '42501', 'permission denied for table disputes',
  'the payee cannot choose the outcome of a dispute (outcome is not insertable)'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000006', 'Too late')$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000006 cannot go from released to disputed',
  'a released payment cannot be disputed'
);
select throws_ok(
  $$update public.disputes set status = 'resolved', outcome = 'release'
    where id = '40000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'the payee cannot resolve a dispute'
);
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'the payee cannot delete a dispute'
);

-- as the payer, hana, at aal1
reset role;
select tests.authenticate_as('hana');
select lives_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000002', 'Tiles cracked')$$,
  'the payer opens a dispute over a funded payment'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000002'),
  'disputed',
  'the payer''s dispute put the payment in dispute'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000004', 'Doors still do not close')$$,
  '23505', 'duplicate key value violates unique constraint "disputes_one_open_per_payment_key"',
  'a second open dispute over the same payment is refused'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000003', 'Not started yet')$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000003 cannot go from pending to disputed',
  'a pending payment cannot be disputed'
);
select is(
  (select count(*)::int from public.disputes where id = '40000000-0000-0000-0000-000000000003'),
  1,
  'the payer reads a dispute the payee opened over her payment'
);
select is(
  (select count(*)::int from public.disputes where id = '40000000-0000-0000-0000-000000000002'),
  0,
  'the payer cannot read a dispute over someone else''s payment'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000008', 'Meddling')$$,
  '42501', 'new row violates row-level security policy for table "disputes"',
  'the payer cannot open a dispute over someone else''s payment'
);
select throws_ok(
  $$update public.disputes set status = 'withdrawn'
    where id = '40000000-0000-0000-0000-000000000003'$$,
  '42501', 'permission denied for table disputes',
  'the payer cannot withdraw or resolve a dispute'
);
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'the payer cannot delete her dispute'
);

-- as the payer, hana, at aal2: the same rights, nothing more
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  $$update public.disputes set status = 'resolved', outcome = 'refund'
    where id = '40000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'at aal2 the payer still cannot resolve her dispute'
);

-- as an unrelated user, sam, at aal1 and at aal2
reset role;
select tests.authenticate_as('sam');
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000005', 'Not my payment')$$,
  '42501', 'new row violates row-level security policy for table "disputes"',
  'an unrelated user cannot open a dispute over hana''s payment'
);
select is(
  (select count(*)::int from public.disputes where id = '40000000-0000-0000-0000-000000000001'),
  0,
  'an unrelated user cannot read a dispute over hana''s payment by id'
);
select throws_ok(
  $$update public.disputes set status = 'withdrawn'
    where id = '40000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'an unrelated user cannot update a dispute'
);
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'an unrelated user cannot delete a dispute'
);
reset role;
select tests.authenticate_as('sam', aal => 'aal2');
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000005', 'Not my payment, at aal2')$$,
  '42501', 'new row violates row-level security policy for table "disputes"',
  'an unrelated user at aal2 still cannot open a dispute over hana''s payment'
);
select is(
  (select count(*)::int from public.disputes where id = '40000000-0000-0000-0000-000000000001'),
  0,
  'an unrelated user at aal2 still cannot read a dispute over hana''s payment'
);

-- as admin (a staff user whose JWT role is admin): reads all and resolves
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (
    select count(*)::int from public.disputes
    where id in (
      '40000000-0000-0000-0000-000000000001', '40000000-0000-0000-0000-000000000002',
      '40000000-0000-0000-0000-000000000003'
    )
  ),
  3,
  'admin reads every dispute'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000005', 'Admin complaint')$$,
  '42501', 'permission denied for table disputes',
  'admin cannot open a dispute'
);
select throws_ok(
  format(
    $$update public.disputes set resolved_by = %L where id = '40000000-0000-0000-0000-000000000001'$$,
    '00000000-0000-0000-0000-000000000000'
  ),
  '42501', 'permission denied for table disputes',
  'admin cannot write who resolved a dispute (resolved_by is the database''s to record)'
);
select throws_ok(
  $$update public.disputes set status = 'resolved', resolution = 'Decided without saying how'
    where id = '40000000-0000-0000-0000-000000000001'$$,
  '23514', 'new row for relation "disputes" violates check constraint "disputes_check"',
  'a dispute cannot be resolved without an outcome'
);
select lives_ok(
  $$update public.disputes
    set status = 'resolved', outcome = 'refund', resolution = 'Doors replaced at no charge'
    where id = '40000000-0000-0000-0000-000000000001'$$,
  'admin resolves a dispute'
);
select lives_ok(
  $$update public.disputes
    set status = 'withdrawn', resolution = 'The payee withdrew the complaint by email'
    where id = '40000000-0000-0000-0000-000000000003'$$,
  'admin records a dispute as withdrawn'
);
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'admin cannot delete a dispute'
);

-- as the owner of the tables: what the trigger recorded for admin's resolutions
reset role;
select results_eq(
  $$select status::text, outcome::text, resolution, resolved_by, resolved_at is not null
    from public.disputes where id = '40000000-0000-0000-0000-000000000001'$$,
  $$values ('resolved', 'refund', 'Doors replaced at no charge', tests.get_supabase_uid('ada'), true)$$,
  'the resolved dispute records its outcome, the admin who resolved it and when'
);
select results_eq(
  $$select status::text, outcome::text, resolved_by, resolved_at is not null
    from public.disputes where id = '40000000-0000-0000-0000-000000000003'$$,
  $$values ('withdrawn', null::text, tests.get_supabase_uid('ada'), true)$$,
  'the withdrawn dispute records the admin who closed it and when'
);

-- as auditor: disputes are not the audit trail, so nothing
reset role;
select tests.authenticate_as('audrey', role_name => 'auditor');
select throws_ok(
  $$select * from public.disputes$$,
  '42501', 'permission denied for table disputes',
  'auditor cannot read disputes'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000005', 'Auditor complaint')$$,
  '42501', 'permission denied for table disputes',
  'auditor cannot open a dispute'
);
select throws_ok(
  $$update public.disputes set status = 'withdrawn'
    where id = '40000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table disputes',
  'auditor cannot update a dispute'
);
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table disputes',
  'auditor cannot delete a dispute'
);

-- as payment_service: reads all, writes nothing
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (
    select count(*)::int from public.disputes
    where id in (
      '40000000-0000-0000-0000-000000000001', '40000000-0000-0000-0000-000000000002',
      '40000000-0000-0000-0000-000000000003'
    )
  ),
  3,
  'payment_service reads every dispute'
);
-- payment_service opens and decides chargebacks only (tests/sql/stripe_border/chargebacks.test.sql)
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000005', 'Service complaint')$$,
  '42501', 'new row violates row-level security policy for table "disputes"',
  'payment_service cannot open a party''s dispute: only a chargeback'
);
select results_eq(
  $$with decided as (
      update public.disputes set status = 'resolved', outcome = 'release'
      where id = '40000000-0000-0000-0000-000000000002' returning 1
    ) select count(*)::int from decided$$,
  $$values (0)$$,
  'payment_service cannot resolve a party''s dispute: no such row is its to update'
);
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table disputes',
  'payment_service cannot delete a dispute'
);

-- as escrow_service: reads all, resolves disputes as admin does, opens and deletes none
reset role;
select tests.authenticate_as_service('escrow_service');
select is(
  (
    select count(*)::int from public.disputes
    where id in (
      '40000000-0000-0000-0000-000000000001', '40000000-0000-0000-0000-000000000002',
      '40000000-0000-0000-0000-000000000003'
    )
  ),
  3,
  'escrow_service reads every dispute'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000005', 'Escrow complaint')$$,
  '42501', 'permission denied for table disputes',
  'escrow_service cannot open a dispute'
);
select throws_ok(
  $$update public.disputes set reason = 'Rewritten' where id = '40000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table disputes',
  'escrow_service cannot rewrite a dispute''s reason'
);
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table disputes',
  'escrow_service cannot delete a dispute'
);
reset role;
select tests.authenticate_as('hana');
with opened as (
  insert into public.disputes (milestone_payment_id, reason)
  values ('30000000-0000-0000-0000-000000000005', 'Paint peeling')
  returning id
)
select set_config('fixture.escrow_dispute', id::text, true) from opened;
reset role;
select tests.authenticate_as_service('escrow_service');
select is(
  tests.raise_if_refused(public.resolve_dispute(
    current_setting('fixture.escrow_dispute')::uuid, 'split', 'Half the walls were repainted',
    'key-escrow-split', 20000
  )) ->> 'status',
  'resolved',
  'escrow_service resolves a dispute with a split, through the RPC'
);
reset role;
select results_eq(
  $$select d.outcome::text, d.payee_share_minor, d.resolved_by is null, mp.status::text
    from public.disputes as d join public.milestone_payments as mp on mp.id = d.milestone_payment_id
    where d.id = current_setting('fixture.escrow_dispute')::uuid$$,
  $$values ('split', 20000::bigint, true, 'split')$$,
  'the payment is split with it; no user resolved it, a service did'
);
select tests.authenticate_as_service('escrow_service');

-- as service_role: reads all, writes nothing
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (
    select count(*)::int from public.disputes
    where id in (
      '40000000-0000-0000-0000-000000000001', '40000000-0000-0000-0000-000000000002',
      '40000000-0000-0000-0000-000000000003'
    )
  ),
  3,
  'service_role reads every dispute'
);
select throws_ok(
  format(
    $$insert into public.disputes (milestone_payment_id, reason, opened_by)
      values ('30000000-0000-0000-0000-000000000005', 'Service role complaint', %L)$$,
    tests.get_supabase_uid('hana')
  ),
  '42501', 'permission denied for table disputes',
  'service_role cannot open a dispute'
);
select throws_ok(
  $$update public.disputes set status = 'resolved', outcome = 'split'
    where id = '40000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table disputes',
  'service_role cannot resolve a dispute'
);
select throws_ok(
  $$delete from public.disputes where id = '40000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table disputes',
  'service_role cannot delete a dispute'
);

-- private.has_open_dispute answers only what the caller may see (sam's roof, 08, is still
-- in dispute)
reset role;
select tests.authenticate_as('hana');
select is(
  private.has_open_dispute('30000000-0000-0000-0000-000000000008'),
  false,
  'a stranger learns nothing of an open dispute over someone else''s payment'
);
reset role;
select tests.authenticate_as('sam');
select is(
  private.has_open_dispute('30000000-0000-0000-0000-000000000008'),
  true,
  'the payer sees the open dispute over their payment'
);

select * from finish();
rollback;
