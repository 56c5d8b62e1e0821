-- Row-level security applies to anon and authenticated only once the request has switched
-- role (SET LOCAL ROLE, as PostgREST does); the owner role bypasses it.
begin;
select plan(10);

-- a throwaway table with one policy: each user sees their own notes
create table public.rls_probe (owner_id uuid not null, note text not null);
alter table public.rls_probe enable row level security;
-- forced, so that even the table's owner is subject to RLS unless it has BYPASSRLS
alter table public.rls_probe force row level security;
create policy "Users see their own notes" on public.rls_probe
for select to authenticated using (owner_id = (select auth.uid()));
grant select on public.rls_probe to anon, authenticated;

select tests.create_supabase_user('alice');
select tests.create_supabase_user('bob');
insert into public.rls_probe (owner_id, note)
values (tests.get_supabase_uid('alice'), 'alice 1'),
  (tests.get_supabase_uid('alice'), 'alice 2'),
  (tests.get_supabase_uid('bob'), 'bob 1');

-- as the owner: RLS is bypassed, every row shows
select is(
  (select count(*)::int from public.rls_probe), 3,
  'postgres (BYPASSRLS) sees every row, even with RLS forced'
);

-- claims alone change nothing while the role is still postgres
select set_config('request.jwt.claims', json_build_object('sub', tests.get_supabase_uid('bob'), 'role', 'authenticated')::text, true);
select is((select count(*)::int from public.rls_probe), 3, 'claims without SET ROLE do not bring RLS into play');

-- as alice
select tests.authenticate_as('alice');
select is(current_user::text, 'authenticated', 'authenticate_as switches the role to authenticated');
select is((select count(*)::int from public.rls_probe), 2, 'alice sees her two notes');
select is(
  (select count(*)::int from public.rls_probe where owner_id = tests.get_supabase_uid('bob')), 0,
  'alice does not see bob''s note, even when she asks for it'
);

-- as bob
select tests.authenticate_as('bob');
select results_eq('select note from public.rls_probe', $$values ('bob 1')$$, 'bob sees only his note');

-- as an anonymous request: no policy is for anon, so no row
select tests.clear_authentication();
select is(current_user::text, 'anon', 'clear_authentication makes the request anonymous');
select is((select count(*)::int from public.rls_probe), 0, 'anon sees no row');

-- as service_role: BYPASSRLS
select tests.authenticate_as_service('service_role');
select is(current_user::text, 'service_role', 'authenticate_as_service switches to the service role');
select is(
  (select count(*)::int from public.rls_probe), 3,
  'service_role (BYPASSRLS, with Supabase''s default grants) sees every row'
);

select * from finish();
rollback;
