-- Card data already stored, in forms the guard reads only since 20261204230000 (other
-- dashes, zero-width characters, slashes, the digits of other scripts, a phone number that
-- passes Luhn): the guard reads only what a write changes, so such a value would stay in its
-- table, and be copied to the audit trail (with the card data removed) at each change of its
-- row.
--
-- This migration looks for it in every column of every guarded table that can hold it, and
-- stops when it finds any, naming the table, the column and the rows' keys (never the
-- values): someone must decide what those values should be, and correct or clear them (the
-- audit trail records the change, with the card data removed from the old value), then deploy
-- again. It runs after the audit trail's own changes, so that such a correction is recorded
-- without its card data.

do $$
declare
  guarded record;
  column_name text;
  found_keys text;
  findings text[] := '{}';
begin
  for guarded in
    select
      t.tgrelid::regclass as relation,
      format('%s.%s', c.relnamespace::regnamespace, c.relname) as table_name,
      coalesce((
        select string_agg(format('r.%I::text', a.attname), ' || '','' || ' order by k.place)
        from pg_catalog.pg_index as i
        cross join lateral unnest(i.indkey) with ordinality as k (attnum, place)
        inner join pg_catalog.pg_attribute as a
          on a.attrelid = i.indrelid and a.attnum = k.attnum
        where i.indrelid = t.tgrelid and i.indisprimary
      ), 'r.ctid::text') as row_key
    from pg_catalog.pg_trigger as t
    inner join pg_catalog.pg_class as c on c.oid = t.tgrelid
    where t.tgfoid = 'private.refuse_card_data()'::regprocedure
    order by t.tgrelid
  loop
    foreach column_name in array private.card_data_columns(guarded.relation) loop
      execute format(
        'select string_agg(f.row_key, '', '' order by f.row_key) from ('
        '  select %s as row_key from %s as r'
        '  where private.holds_card_data(to_jsonb(r.%I))'
        '  order by 1 limit 20'
        ') as f',
        guarded.row_key, guarded.relation, column_name
      ) into found_keys;
      if found_keys is not null then
        findings := findings || format('%s.%s (%s)', guarded.table_name, column_name, found_keys);
      end if;
    end loop;
  end loop;
  if cardinality(findings) > 0 then
    raise exception 'card data is stored in %', array_to_string(findings, '; ')
    using errcode = 'PT422',
    detail = 'These values hold a card number or a card verification code key, as the '
    'card-data guard now reads them (up to 20 rows named per column, by key).',
    hint = 'Correct or clear them, then deploy again.';
  end if;
end
$$;
