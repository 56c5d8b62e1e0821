-- public.milestone_payments, for every role of the access matrix and every command. The payer
-- names only the milestone, of a project he owns; the payee, amount and currency come from
-- the milestone. Payer and payee read; staff and backends read all; nobody deletes. Status
-- changes are tested in milestone_payment_transitions.test.sql; here, which columns a role
-- may write at all, and that what was agreed never changes.
begin;
select plan(68);

-- fixture, as the owner of the tables (postgres, which bypasses RLS)
-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
select tests.create_supabase_user('dora', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('audrey');

-- hana's kitchen, built by carl; sam's roof, built by dora; hana's garden, no contractor yet
insert into public.projects (id, owner_id, contractor_id, title)
values
('10000000-0000-0000-0000-000000000001', tests.get_supabase_uid('hana'),
  tests.get_supabase_uid('carl'), 'Kitchen remodel'),
('10000000-0000-0000-0000-000000000002', tests.get_supabase_uid('sam'),
  tests.get_supabase_uid('dora'), 'Roof repair'),
('10000000-0000-0000-0000-000000000003', tests.get_supabase_uid('hana'), null, 'Garden');

-- amounts below the USD MFA threshold (100000), except the large one
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
values
-- paid, pending
('20000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 1,
  'Demolition', 50000, 'USD'),
-- paid, funded
('20000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000001', 2,
  'Cabinets', 60000, 'USD'),
-- not paid yet
('20000000-0000-0000-0000-000000000003', '10000000-0000-0000-0000-000000000001', 3,
  'Countertops', 45000, 'USD'),
-- not paid yet, at or above the MFA threshold
('20000000-0000-0000-0000-000000000004', '10000000-0000-0000-0000-000000000001', 4,
  'Appliances', 250000, 'USD'),
-- not paid yet, in euros
('20000000-0000-0000-0000-000000000005', '10000000-0000-0000-0000-000000000001', 5,
  'Lighting', 30000, 'EUR'),
-- a project with no contractor to pay
('20000000-0000-0000-0000-000000000006', '10000000-0000-0000-0000-000000000003', 1,
  'Hedges', 10000, 'USD'),
-- paid once, canceled
('20000000-0000-0000-0000-000000000007', '10000000-0000-0000-0000-000000000001', 6,
  'Painting', 20000, 'USD'),
-- sam's milestone, paid, pending
('20000000-0000-0000-0000-000000000008', '10000000-0000-0000-0000-000000000002', 1,
  'New shingles', 40000, 'USD');

insert into public.milestone_payments (id, milestone_id, payer_id)
values
('30000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000001',
  tests.get_supabase_uid('hana')),
('30000000-0000-0000-0000-000000000002', '20000000-0000-0000-0000-000000000002',
  tests.get_supabase_uid('hana')),
('30000000-0000-0000-0000-000000000007', '20000000-0000-0000-0000-000000000007',
  tests.get_supabase_uid('hana')),
('30000000-0000-0000-0000-000000000008', '20000000-0000-0000-0000-000000000008',
  tests.get_supabase_uid('sam'));

-- hana's kitchen escrow; the payments start from their states, their money moved along the
-- legal path by the owner (milestone_payment_transitions.test.sql takes each path as its
-- actor)
insert into public.escrow_accounts (user_id, project_id, currency)
values (tests.get_supabase_uid('hana'), '10000000-0000-0000-0000-000000000001', 'USD');
select tests.set_milestone_payment_status('30000000-0000-0000-0000-000000000002', 'funded');
select tests.set_milestone_payment_status('30000000-0000-0000-0000-000000000007', 'canceled');

-- as an anonymous request: nothing at all
select tests.clear_authentication();
select throws_ok(
  $$select * from public.milestone_payments$$,
  '42501', 'permission denied for table milestone_payments',
  'anon cannot read milestone payments'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000003')$$,
  '42501', 'permission denied for table milestone_payments',
  'anon cannot create a milestone payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'canceled'
    where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'anon cannot update a milestone payment'
);
select throws_ok(
  $$delete from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'anon cannot delete a milestone payment'
);

-- as the payer, hana, at aal1
reset role;
select tests.authenticate_as('hana');
select results_eq(
  $$select id from public.milestone_payments order by id$$,
  $$values ('30000000-0000-0000-0000-000000000001'::uuid),
    ('30000000-0000-0000-0000-000000000002'::uuid),
    ('30000000-0000-0000-0000-000000000007'::uuid)$$,
  'the payer sees her own milestone payments and no other'
);
select is(
  (
    select count(*)::int from public.milestone_payments
    where id = '30000000-0000-0000-0000-000000000008'
  ),
  0,
  'the payer cannot read another user''s milestone payment by id'
);
select lives_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000003')$$,
  'the payer pays a milestone of her own project'
);
select results_eq(
  $$select payer_id, payee_id, amount_minor, currency::text, status::text
    from public.milestone_payments where milestone_id = '20000000-0000-0000-0000-000000000003'$$,
  $$values (tests.get_supabase_uid('hana'), tests.get_supabase_uid('carl'), 45000::bigint,
    'USD', 'pending')$$,
  'a new payment is the payer''s, pending, to the project''s contractor, for the milestone''s amount and currency'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000008')$$,
  '42501', 'new row violates row-level security policy for table "milestone_payments"',
  'the payer cannot pay a milestone of someone else''s project'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id, amount_minor)
    values ('20000000-0000-0000-0000-000000000005', 1)$$,
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot set the amount of a payment (amount_minor is not insertable)'
);
select throws_ok(
  format(
    $$insert into public.milestone_payments (milestone_id, payee_id)
      values ('20000000-0000-0000-0000-000000000005', %L)$$,
    tests.get_supabase_uid('sam')
  ),
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot choose the payee (payee_id is not insertable)'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id, currency)
    values ('20000000-0000-0000-0000-000000000005', 'JPY')$$,
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot choose the currency (currency is not insertable)'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id, status)
    values ('20000000-0000-0000-0000-000000000005', 'released')$$,
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot create a payment already released (status is not insertable)'
);
select throws_ok(
  format(
    $$insert into public.milestone_payments (milestone_id, payer_id)
      values ('20000000-0000-0000-0000-000000000005', %L)$$,
    tests.get_supabase_uid('sam')
  ),
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot create a payment in another user''s name (payer_id is not insertable)'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id, processor_payment_intent_id)
    values ('20000000-0000-0000-0000-000000000005', 'pi_forged1')$$,
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot attach a PaymentIntent (processor_payment_intent_id is not insertable)'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000006')$$,
  'PT422', 'milestone 20000000-0000-0000-0000-000000000006 belongs to a project with no contractor to pay',
  'a milestone of a project with no contractor cannot be paid'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-0000000000ff')$$,
  '42501', 'new row violates row-level security policy for table "milestone_payments"',
  'a payment for a milestone that does not exist is refused like any milestone not one''s own'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000001')$$,
  '23505', 'duplicate key value violates unique constraint "milestone_payments_one_live_per_milestone_key"',
  'a second live payment for the same milestone is refused'
);
select lives_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000007')$$,
  'a milestone whose payment was canceled can be paid again'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000004')$$,
  '42501',
  'new row violates row-level security policy "Large milestone payments require MFA (aal2)" for table "milestone_payments"',
  'at aal1 the payer cannot create a payment at or above the MFA threshold'
);
select throws_ok(
  $$update public.milestone_payments set amount_minor = 1
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot change the amount of a funded payment'
);
select throws_ok(
  $$update public.milestone_payments set currency = 'JPY'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot change the currency of a funded payment'
);
select throws_ok(
  format(
    $$update public.milestone_payments set payee_id = %L
      where id = '30000000-0000-0000-0000-000000000002'$$,
    tests.get_supabase_uid('sam')
  ),
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot change the payee of a funded payment'
);
select throws_ok(
  $$update public.milestone_payments set milestone_id = '20000000-0000-0000-0000-000000000005'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot move a funded payment to another milestone'
);
select throws_ok(
  format(
    $$update public.milestone_payments set payer_id = %L
      where id = '30000000-0000-0000-0000-000000000001'$$,
    tests.get_supabase_uid('sam')
  ),
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot hand her payment to another user (payer_id is not updatable)'
);
with changed as (
  update public.milestone_payments set status = 'canceled'
  where id = '30000000-0000-0000-0000-000000000008'
  returning 1
)
select is(count(*)::int, 0, 'the payer cannot update someone else''s payment') from changed;
select throws_ok(
  $$delete from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot delete her payment'
);

-- as the payer, hana, at aal2
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select lives_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000004')$$,
  'at aal2 the payer creates a payment at or above the MFA threshold'
);
select is(
  (
    select amount_minor from public.milestone_payments
    where milestone_id = '20000000-0000-0000-0000-000000000004'
  ),
  250000::bigint,
  'the large payment carries its milestone''s amount'
);

-- as the payee, carl
reset role;
select tests.authenticate_as('carl');
select is(
  (
    select count(*)::int from public.milestone_payments
    where id in (
      '30000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002',
      '30000000-0000-0000-0000-000000000007'
    )
  ),
  3,
  'the payee reads the payments made to him'
);
select is(
  (
    select count(*)::int from public.milestone_payments
    where id = '30000000-0000-0000-0000-000000000008'
  ),
  0,
  'the payee cannot read a payment made to someone else'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000005')$$,
  '42501', 'new row violates row-level security policy for table "milestone_payments"',
  'the payee cannot create a payment for a milestone of a project he does not own'
);
with changed as (
  update public.milestone_payments set status = 'released'
  where id = '30000000-0000-0000-0000-000000000002'
  returning 1
)
select is(count(*)::int, 0, 'the payee cannot release a funded payment to himself') from changed;
select throws_ok(
  $$update public.milestone_payments set amount_minor = 6000000
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'the payee cannot change the amount of a funded payment'
);
select throws_ok(
  $$delete from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'the payee cannot delete a payment'
);

-- as an unrelated user, sam, at aal1 and at aal2
reset role;
select tests.authenticate_as('sam');
select is(
  (
    select count(*)::int from public.milestone_payments
    where id = '30000000-0000-0000-0000-000000000001'
  ),
  0,
  'an unrelated user cannot read hana''s payment by id'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000005')$$,
  '42501', 'new row violates row-level security policy for table "milestone_payments"',
  'an unrelated user cannot pay hana''s milestone'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000006')$$,
  '42501', 'new row violates row-level security policy for table "milestone_payments"',
  'a stranger learns nothing of a milestone not theirs, not even that its project lacks a contractor'
);
with changed as (
  update public.milestone_payments set status = 'canceled'
  where id = '30000000-0000-0000-0000-000000000001'
  returning 1
)
select is(count(*)::int, 0, 'an unrelated user cannot cancel hana''s payment') from changed;
select throws_ok(
  $$delete from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'an unrelated user cannot delete a payment'
);
reset role;
select tests.authenticate_as('sam', aal => 'aal2');
select is(
  (
    select count(*)::int from public.milestone_payments
    where id = '30000000-0000-0000-0000-000000000001'
  ),
  0,
  'an unrelated user at aal2 still cannot read hana''s payment'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000005')$$,
  '42501', 'new row violates row-level security policy for table "milestone_payments"',
  'an unrelated user at aal2 still cannot pay hana''s milestone'
);

-- as admin (a staff user whose JWT role is admin): reads all; only the status is writable,
-- and only along the transitions
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (
    select count(*)::int from public.milestone_payments
    where id in (
      '30000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002',
      '30000000-0000-0000-0000-000000000007', '30000000-0000-0000-0000-000000000008'
    )
  ),
  4,
  'admin reads every milestone payment'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000005')$$,
  '42501', 'permission denied for table milestone_payments',
  'admin cannot create a milestone payment'
);
select throws_ok(
  $$update public.milestone_payments set amount_minor = 1
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'admin cannot change the amount of a payment'
);
select throws_ok(
  $$delete from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'admin cannot delete a milestone payment'
);

-- as auditor: milestone payments are not the audit trail, so nothing
reset role;
select tests.authenticate_as('audrey', role_name => 'auditor');
select throws_ok(
  $$select * from public.milestone_payments$$,
  '42501', 'permission denied for table milestone_payments',
  'auditor cannot read milestone payments'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000005')$$,
  '42501', 'permission denied for table milestone_payments',
  'auditor cannot create a milestone payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'auditor cannot update a milestone payment'
);
select throws_ok(
  $$delete from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'auditor cannot delete a milestone payment'
);

-- as payment_service: reads all; writes only status, PaymentIntent and escrow account
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (
    select count(*)::int from public.milestone_payments
    where id in (
      '30000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002',
      '30000000-0000-0000-0000-000000000007', '30000000-0000-0000-0000-000000000008'
    )
  ),
  4,
  'payment_service reads every milestone payment'
);
select throws_ok(
  format(
    $$insert into public.milestone_payments (milestone_id, payer_id)
      values ('20000000-0000-0000-0000-000000000005', %L)$$,
    '00000000-0000-0000-0000-000000000000'
  ),
  '42501', 'permission denied for table milestone_payments',
  'payment_service cannot create a milestone payment'
);
select throws_ok(
  $$update public.milestone_payments set amount_minor = 1
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'payment_service cannot change the amount of a funded payment'
);
select throws_ok(
  $$update public.milestone_payments set payee_id = payer_id
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'payment_service cannot change the payee of a funded payment'
);
select throws_ok(
  $$delete from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'payment_service cannot delete a milestone payment'
);

-- as escrow_service: reads all; writes only the status, along the transitions
reset role;
select tests.authenticate_as_service('escrow_service');
select is(
  (
    select count(*)::int from public.milestone_payments
    where id in (
      '30000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002',
      '30000000-0000-0000-0000-000000000007', '30000000-0000-0000-0000-000000000008'
    )
  ),
  4,
  'escrow_service reads every milestone payment'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-0000-0000-000000000005')$$,
  '42501', 'permission denied for table milestone_payments',
  'escrow_service cannot create a milestone payment'
);
select throws_ok(
  $$update public.milestone_payments set currency = 'JPY'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'escrow_service cannot change the currency of a funded payment'
);
select throws_ok(
  $$delete from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'escrow_service cannot delete a milestone payment'
);

-- as service_role: reads all, writes nothing (payments move only through their actors)
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (
    select count(*)::int from public.milestone_payments
    where id in (
      '30000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002',
      '30000000-0000-0000-0000-000000000007', '30000000-0000-0000-0000-000000000008'
    )
  ),
  4,
  'service_role reads every milestone payment'
);
select throws_ok(
  format(
    $$insert into public.milestone_payments (milestone_id, payer_id)
      values ('20000000-0000-0000-0000-000000000005', %L)$$,
    tests.get_supabase_uid('hana')
  ),
  '42501', 'permission denied for table milestone_payments',
  'service_role cannot create a milestone payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table milestone_payments',
  'service_role cannot update a milestone payment'
);
select throws_ok(
  $$delete from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table milestone_payments',
  'service_role cannot delete a milestone payment'
);

-- as the owner of the tables (grants and RLS do not apply): the transition trigger still
-- keeps what was agreed
reset role;
select throws_ok(
  $$update public.milestone_payments set amount_minor = 1
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000002: its milestone, payer, payee, amount and currency never change',
  'not even the table owner changes the amount of a funded payment'
);
select throws_ok(
  $$update public.milestone_payments set currency = 'EUR'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000002: its milestone, payer, payee, amount and currency never change',
  'not even the table owner changes the currency of a funded payment'
);
select throws_ok(
  format(
    $$update public.milestone_payments set payee_id = %L
      where id = '30000000-0000-0000-0000-000000000002'$$,
    tests.get_supabase_uid('dora')
  ),
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000002: its milestone, payer, payee, amount and currency never change',
  'not even the table owner changes the payee of a funded payment'
);
select throws_ok(
  $$update public.milestone_payments set milestone_id = '20000000-0000-0000-0000-000000000005'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000002: its milestone, payer, payee, amount and currency never change',
  'not even the table owner moves a funded payment to another milestone'
);
select results_eq(
  $$select milestone_id, payer_id, payee_id, amount_minor, currency::text, status::text
    from public.milestone_payments where id = '30000000-0000-0000-0000-000000000002'$$,
  $$values ('20000000-0000-0000-0000-000000000002'::uuid, tests.get_supabase_uid('hana'),
    tests.get_supabase_uid('carl'), 60000::bigint, 'USD', 'funded')$$,
  'after every attempt above, the funded payment is as it was agreed'
);

select * from finish();
rollback;
