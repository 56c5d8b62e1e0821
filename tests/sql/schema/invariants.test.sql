-- Schema-wide rules that every payment table keeps, whatever table is added next.
begin;
select plan(12);

-- every foreign key has an index that starts with its columns
select is_empty(
  $$
  select c.conrelid::regclass::text || ' (' || c.conname || ')'
  from pg_constraint as c
  join pg_namespace as n on n.oid = c.connamespace
  where c.contype = 'f' and n.nspname = 'public'
    and not exists (
      select from pg_index as i
      where i.indrelid = c.conrelid
        and (i.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey
    )
  $$,
  'every foreign key in public is indexed'
);

-- every table in public has row-level security enabled and forced
select is_empty(
  $$
  select c.relname::text from pg_class as c
  where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'
    and not (c.relrowsecurity and c.relforcerowsecurity)
  $$,
  'every table in public has row level security enabled and forced'
);

-- anon has no privilege at all on any table in public
select is_empty(
  $$
  select c.relname::text || ': ' || p.privilege_type
  from pg_class as c
  cross join lateral aclexplode(c.relacl) as p
  where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'
    and p.grantee = 'anon'::regrole
  union all
  select c.relname::text || '.' || a.attname || ': ' || p.privilege_type
  from pg_class as c
  join pg_attribute as a on a.attrelid = c.oid
  cross join lateral aclexplode(a.attacl) as p
  where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'
    and p.grantee = 'anon'::regrole
  $$,
  'anon holds no table or column privilege in public'
);

-- money: every amount is a positive bigint of minor units beside a char(3) currency
select is_empty(
  $$
  select c.table_name || '.' || c.column_name from information_schema.columns as c
  where c.table_schema = 'public' and c.column_name like '%amount%'
    and (c.data_type <> 'bigint' or c.column_name <> 'amount_minor')
  $$,
  'every amount column is amount_minor, a bigint'
);
select is_empty(
  $$
  select c.table_name from information_schema.columns as c
  where c.table_schema = 'public' and c.column_name = 'amount_minor'
    and not exists (
      select from information_schema.columns as cur
      where cur.table_schema = 'public' and cur.table_name = c.table_name
        and cur.column_name = 'currency' and cur.data_type = 'character'
        and cur.character_maximum_length = 3
    )
  $$,
  'every amount_minor has a char(3) currency beside it'
);
select is_empty(
  $$
  select c.conrelid::regclass::text from pg_constraint as c
  join pg_attribute as a on a.attrelid = c.conrelid and a.attnum = any(c.conkey)
  where c.contype = 'c' and a.attname = 'amount_minor' and c.connamespace = 'public'::regnamespace
    and pg_get_constraintdef(c.oid) not like '%amount_minor > 0%'
  union all
  select t.table_name from information_schema.columns as t
  where t.table_schema = 'public' and t.column_name = 'amount_minor'
    and not exists (
      select from pg_constraint as c
      where c.conrelid = (quote_ident(t.table_schema) || '.' || quote_ident(t.table_name))::regclass
        and c.contype = 'c' and pg_get_constraintdef(c.oid) like '%amount_minor > 0%'
    )
  $$,
  'every amount_minor is checked to be positive'
);

-- no float or numeric column anywhere in public
select is_empty(
  $$
  select c.table_name || '.' || c.column_name from information_schema.columns as c
  where c.table_schema = 'public' and c.data_type in ('real', 'double precision', 'numeric', 'money')
  $$,
  'no float, numeric or money column holds money'
);

-- timestamps are the database's to keep
select is_empty(
  $$
  select c.relname::text from pg_class as c
  where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'
    and exists (select from pg_attribute as a where a.attrelid = c.oid and a.attname = 'updated_at')
    and not exists (
      select from pg_trigger as t
      where t.tgrelid = c.oid and t.tgfoid = 'private.keep_row_timestamps()'::regprocedure
    )
  $$,
  'every table with updated_at keeps it by trigger'
);

-- card data is refused in every table of the API schema but the audit log, which removes it
-- instead (a refusal there would lose the record of a refusal)
select is_empty(
  $$
  select c.relname::text from pg_class as c
  where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'
    and c.relname <> 'payment_audit_logs'
    and not exists (
      select from pg_trigger as t
      where t.tgrelid = c.oid and t.tgfoid = 'private.refuse_card_data()'::regprocedure
    )
  $$,
  'every table in public has the card-data guard'
);

-- a guard that fires on update of listed columns lists every text and json column
select is_empty(
  $$
  select c.relname || '.' || a.attname
  from pg_trigger as t
  join pg_class as c on c.oid = t.tgrelid
  join pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  where t.tgfoid = 'private.refuse_card_data()'::regprocedure
    and cardinality(t.tgattr::int2[]) > 0
    and a.atttypid in ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'jsonb'::regtype, 'json'::regtype)
    and not a.attnum = any(t.tgattr::int2[])
  $$,
  'a card-data guard limited to some columns on update lists every text column of its table'
);

-- the arguments of the card-data guard and of the audit triggers name the columns that cannot
-- hold card data, as the catalog has them now: after a column is added or retyped, a migration
-- calls private.renew_card_data_guard or private.renew_audit_trail (an added column is read
-- anyway, at a cost; a column retyped to hold text would not be)
select is_empty(
  $$
  select t.tgrelid::regclass::text
  from pg_trigger as t
  where t.tgfoid = 'private.refuse_card_data()'::regprocedure
    and (
      select coalesce(array_agg(u.a order by u.n), '{}')
      from unnest(string_to_array(
        regexp_replace(encode(t.tgargs, 'escape'), '\\000$', ''), '\000'
      )) with ordinality as u (a, n)
    ) is distinct from private.card_data_columns(t.tgrelid::regclass, false)
  $$,
  'every card-data guard names, as its arguments, exactly the columns of its table that cannot hold card data'
);
select is_empty(
  $$
  select t.tgrelid::regclass::text || ' ' || t.tgname
  from pg_trigger as t
  where t.tgfoid in (
      'private.capture_audit_row()'::regprocedure, 'private.capture_audit_inserts()'::regprocedure,
      'private.capture_audit_updates()'::regprocedure
    )
    and (
      select array_agg(u.a order by u.n)
      from unnest(string_to_array(
        regexp_replace(encode(t.tgargs, 'escape'), '\\000$', ''), '\000'
      )) with ordinality as u (a, n)
      where u.n > 1
    ) is distinct from nullif(private.card_data_columns(t.tgrelid::regclass, false), '{}')
  $$,
  'every audit trigger names its key column, then exactly the columns that cannot hold card data'
);

select * from finish();
rollback;
