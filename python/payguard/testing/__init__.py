"""Test support: act as an app client through PostgREST, against fresh template clones."""
