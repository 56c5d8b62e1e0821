-- Nothing postgres creates reaches the API roles until it is granted; `private` is closed.
begin;
select plan(10);

create table public.privileges_probe (id int);
create function public.privileges_probe_fn() returns int language sql as 'select 1';

select ok(not has_table_privilege('anon', 'public.privileges_probe', 'select'), 'anon gets no SELECT on a new table');
select ok(not has_table_privilege('authenticated', 'public.privileges_probe', 'select'), 'authenticated gets no SELECT on a new table');
select ok(not has_table_privilege('authenticated', 'public.privileges_probe', 'insert'), 'authenticated gets no INSERT on a new table');
select ok(has_table_privilege('service_role', 'public.privileges_probe', 'select'), 'service_role keeps Supabase''s default grants');
select ok(not has_function_privilege('anon', 'public.privileges_probe_fn()', 'execute'), 'anon cannot execute a new function');
select ok(not has_function_privilege('authenticated', 'public.privileges_probe_fn()', 'execute'), 'authenticated cannot execute a new function');

select has_schema('private', 'the private schema exists');
select ok(not has_schema_privilege('anon', 'private', 'usage'), 'anon cannot use the private schema');
select ok(
  has_schema_privilege('authenticated', 'private', 'usage'),
  'authenticated may look names up in private, for the helpers its policies call'
);
select ok(
  not has_table_privilege('authenticated', 'private.settings', 'select'),
  'but reads none of its tables'
);

select * from finish();
rollback;
