-- public.projects, for every role of the access matrix and every command: the owner (a
-- homeowner) reads, creates and edits her projects; the contractor reads the projects he is
-- hired for; nobody else sees them; staff and backends read all; only service_role writes
-- freely; nobody but service_role deletes.
begin;
select plan(45);

-- fixture, as the owner of the tables (postgres, which bypasses RLS)
-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('audrey');

-- hana's kitchen, built by carl; sam's roof, with no contractor yet
insert into public.projects (id, owner_id, contractor_id, title)
values
('10000000-0000-0000-0000-000000000001', tests.get_supabase_uid('hana'),
  tests.get_supabase_uid('carl'), 'Kitchen remodel'),
('10000000-0000-0000-0000-000000000002', tests.get_supabase_uid('sam'), null, 'Roof repair');

-- as an anonymous request: nothing at all
select tests.clear_authentication();
select throws_ok(
  $$select * from public.projects$$,
  '42501', 'permission denied for table projects',
  'anon cannot read projects'
);
select throws_ok(
  $$insert into public.projects (title) values ('Anonymous project')$$,
  '42501', 'permission denied for table projects',
  'anon cannot create a project'
);
select throws_ok(
  $$update public.projects set title = 'Defaced' where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'anon cannot update a project'
);
select throws_ok(
  $$delete from public.projects where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'anon cannot delete a project'
);

-- as the owner, hana, at aal1
reset role;
select tests.authenticate_as('hana');
select results_eq(
  $$select id from public.projects$$,
  $$values ('10000000-0000-0000-0000-000000000001'::uuid)$$,
  'the owner sees her own project and no other'
);
select is(
  (select count(*)::int from public.projects where id = '10000000-0000-0000-0000-000000000002'),
  0,
  'the owner cannot read another user''s project by id'
);
select lives_ok(
  $$insert into public.projects (title, description) values ('Bathroom', 'New tiles')$$,
  'the owner creates a project'
);
select is(
  (select owner_id from public.projects where title = 'Bathroom'),
  tests.get_supabase_uid('hana'),
  'a new project belongs to the user who created it'
);
select throws_ok(
  format(
    $$insert into public.projects (owner_id, title) values (%L, 'Planted project')$$,
    tests.get_supabase_uid('sam')
  ),
  '42501', 'permission denied for table projects',
  'a user cannot create a project for another user (owner_id is not insertable)'
);
select throws_ok(
  $$insert into public.projects (id, title) values ('10000000-0000-0000-0000-0000000000ff', 'Chosen id')$$,
  '42501', 'permission denied for table projects',
  'a user cannot choose a project''s id'
);
with changed as (
  update public.projects set title = 'Kitchen and pantry', status = 'open'
  where id = '10000000-0000-0000-0000-000000000001'
  returning 1
)
select is(count(*)::int, 1, 'the owner updates the title and status of her project') from changed;
with changed as (
  update public.projects set contractor_id = tests.get_supabase_uid('carl')
  where title = 'Bathroom'
  returning 1
)
select is(count(*)::int, 1, 'the owner hires a contractor for her project') from changed;
with changed as (
  update public.projects set title = 'Hijacked roof'
  where id = '10000000-0000-0000-0000-000000000002'
  returning 1
)
select is(count(*)::int, 0, 'the owner cannot update someone else''s project') from changed;
select throws_ok(
  format(
    $$update public.projects set owner_id = %L where id = '10000000-0000-0000-0000-000000000001'$$,
    tests.get_supabase_uid('sam')
  ),
  '42501', 'permission denied for table projects',
  'the owner cannot hand her project to another user (owner_id is not updatable)'
);
select throws_ok(
  $$update public.projects set created_at = '2020-01-01' where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'the owner cannot back-date her project'
);
select throws_ok(
  $$delete from public.projects where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'the owner cannot delete her project'
);

-- as the owner, hana, at aal2: the same rights, nothing more
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select is(
  (select count(*)::int from public.projects where id = '10000000-0000-0000-0000-000000000002'),
  0,
  'at aal2 the owner still cannot read another user''s project'
);

-- as the contractor, carl
reset role;
select tests.authenticate_as('carl');
select is(
  (select count(*)::int from public.projects where id = '10000000-0000-0000-0000-000000000001'),
  1,
  'the contractor reads the project he is hired for'
);
select is(
  (select count(*)::int from public.projects where id = '10000000-0000-0000-0000-000000000002'),
  0,
  'the contractor cannot read a project he is not hired for'
);
with changed as (
  update public.projects set title = 'Contractor''s title'
  where id = '10000000-0000-0000-0000-000000000001'
  returning 1
)
select is(count(*)::int, 0, 'the contractor cannot update the project he is hired for') from changed;
select throws_ok(
  $$delete from public.projects where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'the contractor cannot delete a project'
);

-- as an unrelated user, sam, at aal1 and at aal2
reset role;
select tests.authenticate_as('sam');
select is(
  (select count(*)::int from public.projects where id = '10000000-0000-0000-0000-000000000001'),
  0,
  'an unrelated user cannot read hana''s project by id'
);
with changed as (
  update public.projects set title = 'Taken over'
  where id = '10000000-0000-0000-0000-000000000001'
  returning 1
)
select is(count(*)::int, 0, 'an unrelated user cannot update hana''s project') from changed;
select throws_ok(
  $$delete from public.projects where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'an unrelated user cannot delete a project'
);
reset role;
select tests.authenticate_as('sam', aal => 'aal2');
select is(
  (select count(*)::int from public.projects where id = '10000000-0000-0000-0000-000000000001'),
  0,
  'an unrelated user at aal2 still cannot read hana''s project'
);

-- as admin (a staff user whose JWT role is admin): reads everything, writes nothing
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (
    select count(*)::int from public.projects
    where id in ('10000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000002')
  ),
  2,
  'admin reads every project'
);
select throws_ok(
  $$insert into public.projects (title) values ('Admin project')$$,
  '42501', 'permission denied for table projects',
  'admin cannot create a project'
);
select throws_ok(
  $$update public.projects set title = 'Admin edit' where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'admin cannot update a project'
);
select throws_ok(
  $$delete from public.projects where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'admin cannot delete a project'
);

-- as auditor: projects are not part of the audit trail, so nothing
reset role;
select tests.authenticate_as('audrey', role_name => 'auditor');
select throws_ok(
  $$select * from public.projects$$,
  '42501', 'permission denied for table projects',
  'auditor cannot read projects'
);
select throws_ok(
  $$insert into public.projects (title) values ('Auditor project')$$,
  '42501', 'permission denied for table projects',
  'auditor cannot create a project'
);
select throws_ok(
  $$update public.projects set title = 'Audited' where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'auditor cannot update a project'
);
select throws_ok(
  $$delete from public.projects where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'auditor cannot delete a project'
);

-- as payment_service: reads every project, writes none
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (
    select count(*)::int from public.projects
    where id in ('10000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000002')
  ),
  2,
  'payment_service reads every project'
);
select throws_ok(
  $$insert into public.projects (title) values ('Service project')$$,
  '42501', 'permission denied for table projects',
  'payment_service cannot create a project'
);
select throws_ok(
  $$update public.projects set title = 'Service edit' where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'payment_service cannot update a project'
);
select throws_ok(
  $$delete from public.projects where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'payment_service cannot delete a project'
);

-- as escrow_service: reads every project, writes none
reset role;
select tests.authenticate_as_service('escrow_service');
select is(
  (
    select count(*)::int from public.projects
    where id in ('10000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000002')
  ),
  2,
  'escrow_service reads every project'
);
select throws_ok(
  $$insert into public.projects (title) values ('Escrow project')$$,
  '42501', 'permission denied for table projects',
  'escrow_service cannot create a project'
);
select throws_ok(
  $$update public.projects set title = 'Escrow edit' where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'escrow_service cannot update a project'
);
select throws_ok(
  $$delete from public.projects where id = '10000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table projects',
  'escrow_service cannot delete a project'
);

-- as service_role (BYPASSRLS, with every grant): reads and writes everything
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (
    select count(*)::int from public.projects
    where id in ('10000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000002')
  ),
  2,
  'service_role reads every project'
);
select lives_ok(
  format(
    $$insert into public.projects (owner_id, title) values (%L, 'Garden shed')$$,
    tests.get_supabase_uid('sam')
  ),
  'service_role creates a project for a user'
);
with changed as (
  update public.projects set title = 'Roof and gutters'
  where id = '10000000-0000-0000-0000-000000000002'
  returning 1
)
select is(count(*)::int, 1, 'service_role updates any project') from changed;
with changed as (
  delete from public.projects where id = '10000000-0000-0000-0000-000000000002'
  returning 1
)
select is(count(*)::int, 1, 'service_role deletes a project') from changed;

select * from finish();
rollback;
