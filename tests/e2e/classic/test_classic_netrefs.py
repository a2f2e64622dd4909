"""Working with remote objects: iteration, context managers, operators, isinstance."""


def test_iteration_over_remote_generators_and_buffiter(client):
    out = client.run("""
        conn = connect()
        gen = conn.eval("(i * i for i in range(1000))")
        assert list(gen) == [i * i for i in range(1000)]
        assert list(rpyc.buffiter(conn.eval("iter(range(2500))"))) == list(range(2500))
        remote_exec(conn, '''
            def countdown(n):
                while n:
                    yield n
                    n -= 1
        ''')
        assert list(conn.namespace["countdown"](5)) == [5, 4, 3, 2, 1]
        d = conn.eval("{'a': 1, 'b': 2}")
        assert sorted(d.keys()) == ["a", "b"]
        assert sorted(iter(d)) == ["a", "b"]
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_context_managers(client, tmp_path):
    target = tmp_path / "ctx.txt"
    out = client.run(f"""
        conn = connect()
        with conn.builtins.open({str(target)!r}, "w") as f:
            f.write("written remotely")
        assert f.closed
        with conn.builtins.open({str(target)!r}) as f:
            assert f.read() == "written remotely"
        remote_exec(conn, '''
            class Guard:
                log = []
                def __enter__(self):
                    self.log.append("enter")
                    return self
                def __exit__(self, t, v, tb):
                    self.log.append("exit:" + (t.__name__ if t else "None"))
                    return True   # swallow
        ''')
        g = conn.eval("Guard()")
        with g as entered:
            pass
        with g:
            raise ValueError("inside with")
        log = list(conn.eval("Guard.log"))
        assert log[0] == "enter" and log[1] == "exit:None", log
        assert log[2] == "enter" and log[3].startswith("exit:"), log
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")
    assert target.read_text() == "written remotely"


def test_operators_on_netrefs(client):
    out = client.run("""
        conn = connect()
        lst = conn.eval("[3, 1, 2]")
        assert len(lst) == 3
        assert lst[0] == 3
        lst[0] = 5
        assert lst[0] == 5
        lst.sort()
        assert list(lst) == [1, 2, 5]
        assert 2 in lst and 7 not in lst
        assert repr(lst) == "[1, 2, 5]"
        assert str(lst) == "[1, 2, 5]"
        assert "append" in dir(lst)
        t = conn.eval("(1, [2])")   # a tuple holding a reference: label TUPLE
        assert t[0] == 1 and list(t[1]) == [2]
        s = conn.eval("'abc' * 2")
        assert s == "abcabc"
        remote_exec(conn, '''
            class N:
                def __add__(self, o): return 40 + o
                def __eq__(self, o): return o == "n"
                def __hash__(self): return 1234
                def __lt__(self, o): return True
            class O: pass
        ''')
        n = conn.eval("N()")
        assert n + 2 == 42
        assert n == "n" and not (n != "n")
        assert n < 5
        assert hash(n) == 1234
        d = conn.eval("dict(a=1)")
        d["b"] = 2
        assert d["b"] == 2 and len(d) == 2
        del d["a"]
        assert list(d.keys()) == ["b"]
        obj = conn.eval("O()")
        obj.attr = 7
        assert obj.attr == 7
        del obj.attr
        assert not hasattr(obj, "attr")
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_isinstance_of_remote_objects(client):
    out = client.run("""
        conn = connect()
        remote_exec(conn, '''
            class Base: pass
            class Child(Base): pass
            child = Child()
        ''')
        child = conn.namespace["child"]
        Base = conn.namespace["Base"]
        Child = conn.namespace["Child"]
        assert isinstance(child, Child)
        if not REFERENCE:  # docs/protocol.md §5.2: the reference's INSTANCECHECK misses subclasses
            assert isinstance(child, Base)
        assert not isinstance(conn.eval("Base()"), Child)
        assert isinstance(conn.eval("[]"), list)
        assert isinstance(conn.eval("{}"), conn.builtins.dict)
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")
