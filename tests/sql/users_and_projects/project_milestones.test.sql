-- public.project_milestones, for every role of the access matrix and every command: the
-- project's owner adds milestones and edits their title, status and due date, never their
-- amount, currency or project; both parties read them; nobody else sees them; staff and
-- backends read all; only service_role writes freely; nobody but service_role deletes.
begin;
select plan(49);

-- fixture, as the owner of the tables (postgres, which bypasses RLS)
-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('audrey');

-- hana's kitchen, built by carl, with two milestones; sam's roof, with one
insert into public.projects (id, owner_id, contractor_id, title)
values
('10000000-0000-0000-0000-000000000001', tests.get_supabase_uid('hana'),
  tests.get_supabase_uid('carl'), 'Kitchen remodel'),
('10000000-0000-0000-0000-000000000002', tests.get_supabase_uid('sam'), null, 'Roof repair');
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
values
('20000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 1,
  'Demolition', 50000, 'USD'),
('20000000-0000-0000-0000-000000000002', '10000000-0000-0000-0000-000000000001', 2,
  'Cabinets', 70000, 'USD'),
('20000000-0000-0000-0000-000000000003', '10000000-0000-0000-0000-000000000002', 1,
  'New shingles', 90000, 'USD');

-- as an anonymous request: nothing at all
select tests.clear_authentication();
select throws_ok(
  $$select * from public.project_milestones$$,
  '42501', 'permission denied for table project_milestones',
  'anon cannot read milestones'
);
select throws_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values ('10000000-0000-0000-0000-000000000001', 9, 'Anonymous', 100, 'USD')$$,
  '42501', 'permission denied for table project_milestones',
  'anon cannot add a milestone'
);
select throws_ok(
  $$update public.project_milestones set title = 'Defaced'
    where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'anon cannot update a milestone'
);
select throws_ok(
  $$delete from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'anon cannot delete a milestone'
);

-- as the project's owner, hana, at aal1
reset role;
select tests.authenticate_as('hana');
select results_eq(
  $$select id from public.project_milestones order by id$$,
  $$values ('20000000-0000-0000-0000-000000000001'::uuid),
    ('20000000-0000-0000-0000-000000000002'::uuid)$$,
  'the owner sees the milestones of her project and no other'
);
select is(
  (
    select count(*)::int from public.project_milestones
    where id = '20000000-0000-0000-0000-000000000003'
  ),
  0,
  'the owner cannot read another user''s milestone by id'
);
select lives_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency, due_on)
    values ('10000000-0000-0000-0000-000000000001', 3, 'Countertops', 40000, 'USD', '2027-03-01')$$,
  'the owner adds a milestone to her project'
);
select is(
  (
    select count(*)::int from public.project_milestones
    where project_id = '10000000-0000-0000-0000-000000000001'
  ),
  3,
  'the added milestone is on her project'
);
select throws_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values ('10000000-0000-0000-0000-000000000002', 2, 'Planted milestone', 100, 'USD')$$,
  '42501', 'new row violates row-level security policy for table "project_milestones"',
  'the owner cannot add a milestone to someone else''s project'
);
select throws_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency, status)
    values ('10000000-0000-0000-0000-000000000001', 4, 'Already approved', 100, 'USD', 'approved')$$,
  '42501', 'permission denied for table project_milestones',
  'the owner cannot add a milestone that is already approved (status is not insertable)'
);
with changed as (
  update public.project_milestones
  set title = 'Demolition and haul-away', status = 'in_progress', due_on = '2027-01-15'
  where id = '20000000-0000-0000-0000-000000000001'
  returning 1
)
select is(count(*)::int, 1, 'the owner updates the title, status and due date of her milestone')
from changed;
select throws_ok(
  $$update public.project_milestones set amount_minor = 1
    where id = '20000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table project_milestones',
  'the owner cannot change a milestone''s amount'
);
select throws_ok(
  $$update public.project_milestones set currency = 'JPY'
    where id = '20000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table project_milestones',
  'the owner cannot change a milestone''s currency'
);
select throws_ok(
  $$update public.project_milestones set project_id = '10000000-0000-0000-0000-000000000002'
    where id = '20000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table project_milestones',
  'the owner cannot move a milestone to another project (project_id is not updatable)'
);
with changed as (
  update public.project_milestones set title = 'Hijacked shingles'
  where id = '20000000-0000-0000-0000-000000000003'
  returning 1
)
select is(count(*)::int, 0, 'the owner cannot update a milestone of someone else''s project')
from changed;
select throws_ok(
  $$delete from public.project_milestones where id = '20000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table project_milestones',
  'the owner cannot delete her milestone'
);

-- as the project's owner, hana, at aal2: the same rights, nothing more
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  $$update public.project_milestones set amount_minor = 1
    where id = '20000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table project_milestones',
  'at aal2 the owner still cannot change a milestone''s amount'
);

-- as the contractor, carl
reset role;
select tests.authenticate_as('carl');
select is(
  (
    select count(*)::int from public.project_milestones
    where id in ('20000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000002')
  ),
  2,
  'the contractor reads the milestones of the project he is hired for'
);
select is(
  (
    select count(*)::int from public.project_milestones
    where id = '20000000-0000-0000-0000-000000000003'
  ),
  0,
  'the contractor cannot read milestones of a project he is not hired for'
);
select throws_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values ('10000000-0000-0000-0000-000000000001', 5, 'Extra work', 999999, 'USD')$$,
  '42501', 'new row violates row-level security policy for table "project_milestones"',
  'the contractor cannot add a milestone to the project he is hired for'
);
with changed as (
  update public.project_milestones set status = 'approved'
  where id = '20000000-0000-0000-0000-000000000002'
  returning 1
)
select is(count(*)::int, 0, 'the contractor cannot approve a milestone himself') from changed;
select throws_ok(
  $$delete from public.project_milestones where id = '20000000-0000-0000-0000-000000000002'$$,
  '42501', 'permission denied for table project_milestones',
  'the contractor cannot delete a milestone'
);

-- as an unrelated user, sam, at aal1 and at aal2
reset role;
select tests.authenticate_as('sam');
select is(
  (
    select count(*)::int from public.project_milestones
    where id = '20000000-0000-0000-0000-000000000001'
  ),
  0,
  'an unrelated user cannot read hana''s milestone by id'
);
select throws_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values ('10000000-0000-0000-0000-000000000001', 6, 'Stranger''s milestone', 100, 'USD')$$,
  '42501', 'new row violates row-level security policy for table "project_milestones"',
  'an unrelated user cannot add a milestone to hana''s project'
);
with changed as (
  update public.project_milestones set title = 'Taken over'
  where id = '20000000-0000-0000-0000-000000000001'
  returning 1
)
select is(count(*)::int, 0, 'an unrelated user cannot update hana''s milestone') from changed;
select throws_ok(
  $$delete from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'an unrelated user cannot delete a milestone'
);
reset role;
select tests.authenticate_as('sam', aal => 'aal2');
select is(
  (
    select count(*)::int from public.project_milestones
    where id = '20000000-0000-0000-0000-000000000001'
  ),
  0,
  'an unrelated user at aal2 still cannot read hana''s milestone'
);
with changed as (
  update public.project_milestones set title = 'Taken over at aal2'
  where id = '20000000-0000-0000-0000-000000000001'
  returning 1
)
select is(count(*)::int, 0, 'an unrelated user at aal2 still cannot update hana''s milestone')
from changed;

-- as admin (a staff user whose JWT role is admin): reads everything, writes nothing
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (
    select count(*)::int from public.project_milestones
    where id in (
      '20000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000002',
      '20000000-0000-0000-0000-000000000003'
    )
  ),
  3,
  'admin reads every milestone'
);
select throws_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values ('10000000-0000-0000-0000-000000000001', 7, 'Admin milestone', 100, 'USD')$$,
  '42501', 'permission denied for table project_milestones',
  'admin cannot add a milestone'
);
select throws_ok(
  $$update public.project_milestones set title = 'Admin edit'
    where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'admin cannot update a milestone'
);
select throws_ok(
  $$delete from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'admin cannot delete a milestone'
);

-- as auditor: milestones are not part of the audit trail, so nothing
reset role;
select tests.authenticate_as('audrey', role_name => 'auditor');
select throws_ok(
  $$select * from public.project_milestones$$,
  '42501', 'permission denied for table project_milestones',
  'auditor cannot read milestones'
);
select throws_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values ('10000000-0000-0000-0000-000000000001', 7, 'Auditor milestone', 100, 'USD')$$,
  '42501', 'permission denied for table project_milestones',
  'auditor cannot add a milestone'
);
select throws_ok(
  $$update public.project_milestones set title = 'Audited'
    where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'auditor cannot update a milestone'
);
select throws_ok(
  $$delete from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'auditor cannot delete a milestone'
);

-- as payment_service: reads every milestone, writes none
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (
    select count(*)::int from public.project_milestones
    where id in (
      '20000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000002',
      '20000000-0000-0000-0000-000000000003'
    )
  ),
  3,
  'payment_service reads every milestone'
);
select throws_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values ('10000000-0000-0000-0000-000000000001', 7, 'Service milestone', 100, 'USD')$$,
  '42501', 'permission denied for table project_milestones',
  'payment_service cannot add a milestone'
);
select throws_ok(
  $$update public.project_milestones set amount_minor = 1
    where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'payment_service cannot update a milestone'
);
select throws_ok(
  $$delete from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'payment_service cannot delete a milestone'
);

-- as escrow_service: reads every milestone, writes none
reset role;
select tests.authenticate_as_service('escrow_service');
select is(
  (
    select count(*)::int from public.project_milestones
    where id in (
      '20000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000002',
      '20000000-0000-0000-0000-000000000003'
    )
  ),
  3,
  'escrow_service reads every milestone'
);
select throws_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values ('10000000-0000-0000-0000-000000000001', 7, 'Escrow milestone', 100, 'USD')$$,
  '42501', 'permission denied for table project_milestones',
  'escrow_service cannot add a milestone'
);
select throws_ok(
  $$update public.project_milestones set amount_minor = 1
    where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'escrow_service cannot update a milestone'
);
select throws_ok(
  $$delete from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table project_milestones',
  'escrow_service cannot delete a milestone'
);

-- as service_role (BYPASSRLS, with every grant): reads and writes everything
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (
    select count(*)::int from public.project_milestones
    where id in (
      '20000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000002',
      '20000000-0000-0000-0000-000000000003'
    )
  ),
  3,
  'service_role reads every milestone'
);
select lives_ok(
  $$insert into public.project_milestones (project_id, position, title, amount_minor, currency)
    values ('10000000-0000-0000-0000-000000000002', 2, 'Gutters', 30000, 'USD')$$,
  'service_role adds a milestone to any project'
);
with changed as (
  update public.project_milestones set amount_minor = 95000
  where id = '20000000-0000-0000-0000-000000000003'
  returning 1
)
select is(count(*)::int, 1, 'service_role updates any milestone, its amount included') from changed;
with changed as (
  delete from public.project_milestones where id = '20000000-0000-0000-0000-000000000003'
  returning 1
)
select is(count(*)::int, 1, 'service_role deletes a milestone') from changed;

-- as the owner of the tables again: what the refused statements above did not change
reset role;
select results_eq(
  $$select id, title, amount_minor, currency::text, project_id, status::text
    from public.project_milestones
    where id in ('20000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000002')
    order by id$$,
  $$values
    ('20000000-0000-0000-0000-000000000001'::uuid, 'Demolition and haul-away', 50000::bigint,
      'USD', '10000000-0000-0000-0000-000000000001'::uuid, 'in_progress'),
    ('20000000-0000-0000-0000-000000000002'::uuid, 'Cabinets', 70000::bigint,
      'USD', '10000000-0000-0000-0000-000000000001'::uuid, 'planned')$$,
  'hana''s milestones hold only the owner''s allowed edit'
);

select * from finish();
rollback;
