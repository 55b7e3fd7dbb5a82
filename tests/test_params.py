import argparse
import math
import re

import numpy as np
import pytest

from dovlib.params import (PROFILES, check_bool, check_choice, check_int, get_profile, parse_eps, parse_fraction,
                           parse_list, parse_precisions, parse_rate, parse_target)


@pytest.mark.parametrize("value, expected", [
    ("8/255", 8 / 255), (8 / 255, 8 / 255), ("0.03", 0.03), (" 16 / 255 ", 16 / 255), ("1", 1.0), (1, 1.0),
    ("1e-2", 0.01), ("3.1e-2", 0.031),
])
def test_parse_eps_accepts_what_papermill_passes(value, expected):
    assert parse_eps(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["8/0", "-1/255", "2", "abc", "", "   ", "nan", "inf", "8/255/2", "0", 0, 1.5, -0.1,
                                   math.nan, math.inf])
def test_parse_eps_refuses_bad_values_naming_eps_and_range(value):
    with pytest.raises(ValueError) as err:
        parse_eps(value)
    assert "eps" in str(err.value) and "[1/255, 1]" in str(err.value)


@pytest.mark.parametrize("value", [None, True, [8, 255], {"eps": 1}])
def test_parse_eps_refuses_wrong_types(value):
    with pytest.raises(TypeError, match=r"eps .*\[1/255, 1\]"):
        parse_eps(value)


@pytest.mark.parametrize("value", ["1e400", "1/1e-400", 10 ** 400, "-1e400"])
def test_numbers_past_floats_range_are_refused_by_name(value):
    with pytest.raises(ValueError, match=r"eps must be a number in \[1/255, 1\].*too large for a float"):
        parse_eps(value)
    with pytest.raises(ValueError, match=r"rate must be a number in \(0, 1\]"):
        parse_rate(value)


def test_parse_eps_names_division_by_zero():
    with pytest.raises(ValueError, match="divides by zero"):
        parse_eps("8/0")


def test_range_errors_give_examples_only_from_the_range():
    # one value from the range, as a decimal and as a fraction (not eps-like 8/255 for every parameter)
    with pytest.raises(ValueError, match=r"rate must be a number in \(0, 1\], e.g. 0.25 or 1/4; got"):
        parse_rate("2")
    with pytest.raises(ValueError, match=r"check_alpha must be a number in \(0, 0.01\], e.g. 0.0025 or 1/400; "
                                         r"got '0.05'"):
        parse_fraction("check_alpha", "0.05", 0.0, 0.01)
    with pytest.raises(ValueError, match=r"tau must be a number in \[0, 1\), e.g. 0.25 or 1/4; got"):
        parse_fraction("tau", "1", 0.0, 1.0, low_inclusive=True, high_inclusive=False)
    with pytest.raises(ValueError, match=r"share must be a number in \[0.02, 0.1\], e.g. 0.04 or 1/25; got"):
        parse_fraction("share", "2", 0.02, 0.1, low_inclusive=True)
    with pytest.raises(ValueError, match=r"l1 must be a number in \[0, 1e\+06\], e.g. 1; got"):
        parse_fraction("l1", "-1", 0.0, 1e6, low_inclusive=True)
    with pytest.raises(ValueError, match=r"w must be a number in \(0, inf\]; got"):
        parse_fraction("w", "-1", 0.0, math.inf)


def test_parse_rate_and_custom_interval():
    assert parse_rate("0.1") == pytest.approx(0.1)
    assert parse_rate("1/20") == pytest.approx(0.05)
    with pytest.raises(ValueError, match="rate"):
        parse_rate("1.5")
    assert parse_fraction("rho", "0.5", 0, 1, high_inclusive=False) == 0.5
    with pytest.raises(ValueError, match=r"rho must be a number in \(0, 1\)"):
        parse_fraction("rho", 1, 0, 1, high_inclusive=False)
    assert parse_fraction("share", 0, 0, 1, low_inclusive=True) == 0


def test_profiles_shrink_budgets_in_order():
    smoke, quick, paper = (get_profile(n) for n in ("smoke", "quick", "paper"))
    assert smoke.device == "cpu" and smoke.n_train is not None
    assert smoke.epochs < quick.epochs <= paper.epochs
    assert smoke.gen_iters < quick.gen_iters <= paper.gen_iters
    assert paper.verify_m == 100 and paper.n_train is None
    assert set(PROFILES) == {"smoke", "quick", "paper"}


def test_profile_overrides_and_errors():
    p = get_profile("smoke", epochs=5, lr=None)
    assert p.epochs == 5 and p.lr == PROFILES["smoke"].lr
    assert PROFILES["smoke"].epochs != 5  # the table itself is untouched
    with pytest.raises(ValueError, match="profile must be one of"):
        get_profile("fast")
    with pytest.raises(ValueError, match="unknown profile field"):
        get_profile("smoke", epoch=3)


def test_check_choice_and_int():
    check_choice("arch", "vgg16", ["vgg16", "resnet18"])
    with pytest.raises(ValueError, match=r"arch must be one of \['vgg16'\]"):
        check_choice("arch", "vgg", ["vgg16"])
    assert check_int("epochs", "3", 1) == 3
    assert check_int("epochs", 4.0, 1) == 4
    with pytest.raises(ValueError, match=r"epochs must be an integer in \[1, 10\]"):
        check_int("epochs", 11, 1, 10)
    with pytest.raises(ValueError, match="epochs"):
        check_int("epochs", 2.5, 1)
    with pytest.raises(TypeError, match="epochs"):
        check_int("epochs", "many", 1)


def test_profile_overrides_in_the_name():
    from dovlib.params import get_profile

    p = get_profile("quick:device=cpu, epochs=10,width=16,lr=0.05")
    assert (p.name, p.device, p.epochs, p.width, p.lr, p.batch_size) == ("quick", "cpu", 10, 16, 0.05, 512)
    assert get_profile("smoke:n_train=None").n_train is None  # None is a value here, not "no override"
    assert get_profile("smoke:epochs=3", epochs=5).epochs == 5  # keyword overrides win
    assert get_profile("smoke:") == get_profile("smoke")
    with pytest.raises(ValueError, match="profile override 'epoch=3'.*epochs"):
        get_profile("smoke:epoch=3")
    with pytest.raises(ValueError, match="epochs must be an integer"):
        get_profile("smoke:epochs=ten")
    with pytest.raises(ValueError, match="profile"):
        get_profile("fast:epochs=3")
    with pytest.raises(TypeError, match="profile"):
        get_profile(3)


def test_profile_key_is_the_canonical_spelling_or_the_value_as_given():
    from dovlib.params import profile_key

    assert profile_key("quick: epochs=40") == profile_key("quick") == "quick"
    assert profile_key("quick:lr=5e-2,epochs=10") == "quick:epochs=10,lr=0.05"
    assert profile_key("quick:no_such_field=1") == "quick:no_such_field=1"  # an old record's string: as written
    assert profile_key("huge") == "huge"
    assert profile_key(None) is None


def test_canonical_profile_is_one_spelling_per_budget():
    from dovlib.params import canonical_profile, get_profile

    assert canonical_profile("quick: lr=5e-2, epochs=10") == canonical_profile("quick:epochs=10,lr=0.05") == \
        "quick:epochs=10,lr=0.05"
    assert canonical_profile(" smoke ") == canonical_profile("smoke:") == "smoke"
    assert canonical_profile("smoke:n_train=all") == "smoke:n_train=None"
    # an override equal to the profile's own value is the same budget
    assert canonical_profile("quick:epochs=40,n_train=None") == "quick" == canonical_profile("quick")
    assert get_profile("quick:epochs=40") == get_profile("quick") and get_profile("quick").epochs == 40
    spec = canonical_profile("quick:width=16,device=cpu")
    assert spec == "quick:device=cpu,width=16" and get_profile(spec) == get_profile("quick:width=16,device=cpu")
    # a field given twice was read as its last value; now it is refused
    with pytest.raises(ValueError, match=r"profile override epochs is given twice in 'epochs=10,epochs=20'"):
        get_profile("quick:epochs=10,epochs=20")
    with pytest.raises(ValueError, match="profile"):
        canonical_profile("fast")


def test_profile_precision_defaults_to_auto_and_is_checked():
    assert all(p.precision == "auto" for p in PROFILES.values())
    assert get_profile("quick:device=cpu,precision=bf16").precision == "bf16"
    assert get_profile("smoke", precision="fp32").precision == "fp32"
    with pytest.raises(ValueError, match=r"precision must be one of \['auto', 'fp32', 'bf16'\]; got 'fp16'"):
        get_profile("smoke:precision=fp16")


def test_parse_precisions_reads_a_comma_separated_list_and_names_the_choices():
    assert parse_precisions("auto, bf16") == ["auto", "bf16"] and parse_precisions("fp32") == ["fp32"]
    with pytest.raises(argparse.ArgumentTypeError, match="precision names auto more than once"):
        parse_precisions("auto,bf16,auto")
    for bad in ("", ",", "auto,fp16", "half"):
        with pytest.raises(ValueError, match=r"precision must be a comma-separated list of \['auto', 'fp32', 'bf16'\]"):
            parse_precisions(bad)


def test_parse_target_reads_a_class_index_or_key():
    # papermill passes "3" or 3; "key" (any case) means: drawn from the owner's key, returned as None
    assert parse_target(3) == 3 and parse_target("3") == 3 and parse_target(0) == 0
    assert parse_target("key") is None and parse_target(" KEY ") is None
    for bad in (-1, "abc", "1.5", True, None, ""):
        with pytest.raises(ValueError, match=r"target must be a class index >= 0 or 'key'.*got"):
            parse_target(bad)


def test_check_bool_accepts_only_bools():
    assert check_bool("same_code", True) is True and check_bool("same_code", False) is False
    for bad in ("False", "true", 0, 1, None):
        with pytest.raises(TypeError, match=r"same_code must be True or False; got"):
            check_bool("same_code", bad)


@pytest.mark.parametrize("spec, message", [
    ("epochs=0", "profile field epochs must be an integer >= 1; got 0"),
    ("verify_m=1", "profile field verify_m must be an integer >= 2; got 1"),  # a t-test needs two queries
    ("finetune_epochs=0", "profile field finetune_epochs must be an integer >= 1"),
    ("gen_batch=1", "profile field gen_batch must be an integer >= 2"),
    ("n_test=0", "profile field n_test must be an integer >= 1"),
    ("device=gpu", "profile field device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got 'gpu'"),
    ("lr=0", "profile field lr must be a finite number > 0"),
    ("lr=nan", "profile field lr must be a finite number > 0"),
])
def test_profile_fields_out_of_range_are_refused_naming_the_field(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_profile(f"smoke:{spec}")
    field, _, _ = spec.partition("=")
    good = {"device": "cuda:1", "lr": 1e-3}.get(field, 2)
    assert getattr(get_profile("smoke", **{field: good}), field) == good  # in range: kept as given


def test_parse_list_reads_lists_scalars_and_comma_separated_strings():
    assert parse_list("shares", [0.1, 0.5]) == [0.1, 0.5] and parse_list("shares", 0.5) == [0.5]
    assert parse_list("shares", "0.1, 0.5") == ["0.1", "0.5"] and parse_list("shares", "[0.1,0.5]") == ["0.1", "0.5"]
    as_int = lambda v: check_int("message_bits", v, 1)  # noqa: E731
    assert parse_list("message_bits", "(100, 200)", as_int) == [100, 200]
    with pytest.raises(ValueError, match="message_bits must be an integer >= 1; got 0"):
        parse_list("message_bits", "100,0", as_int)
    with pytest.raises(ValueError, match="shares needs at least one value"):
        parse_list("shares", " , ")


def test_check_int_keeps_big_integers_exact_and_names_the_whole_range():
    big = 2**53 + 1  # float(big) is its neighbour 2**53
    assert check_int("seed", str(big), 0) == big and check_int("seed", big, 0) == big
    assert check_int("seed", " 12 ", 0) == 12 and check_int("seed", "1e1", 0) == 10 and check_int("k", 4.0, 1) == 4
    with pytest.raises(TypeError, match=r"k must be an integer in \[1, 5\]; got 'x'"):
        check_int("k", "x", 1, 5)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\]; got 2\.5"):
        check_int("k", 2.5, 1, 5)


@pytest.mark.parametrize("value", ["1e999999999", "1/1e-999999999", "1e-999999999", "8/1e999999999", "1e" + "9" * 5000])
def test_huge_exponents_are_refused_at_once_naming_the_parameter(value):
    """``Fraction("1e999999999")`` would build a 10**999999999 integer (minutes and gigabytes) before any range
    check: an exponent far outside a float's range is refused before that."""
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"eps must be a number in \[1/255, 1\].*exponent beyond \+-1000"):
        parse_eps(value)
    assert time.perf_counter() - start < 1.0
    assert parse_eps("8e-1000/255e-1000") == 8 / 255  # exponents up to the bound cancel exactly
    assert parse_rate("1e-300") == 1e-300  # within a float's range: read as before


def test_a_value_just_past_a_bound_is_not_printed_as_the_bound():
    with pytest.raises(ValueError, match=r"got '1\.0000001' = 1\.0000001$"):
        parse_rate("1.0000001")
    with pytest.raises(ValueError, match=r"got '2' = 2$"):  # away from a bound, 6 digits as before
        parse_rate("2")


def test_numpy_bools_are_not_integers_and_lr_is_not_a_bool():
    with pytest.raises(TypeError, match=r"target must be an integer >= 0; got (np\.)?True"):
        check_int("target", np.True_, 0)
    with pytest.raises(ValueError, match="profile field lr must be a finite number > 0; got True"):
        get_profile("smoke", lr=True)
    with pytest.raises(ValueError, match="a profile's name cannot be overridden"):
        PROFILES["smoke"].with_overrides(name="paper")  # a smoke budget must not carry the name "paper"


def test_check_int_reads_decimal_strings_exactly_and_refuses_fractions():
    assert check_int("n", "9007199254740993.0", 1) == 9007199254740993  # was its float neighbour ...992
    assert check_int("n", " 1e3 ", 1) == 1000 and check_int("n", "3.0", 1) == 3
    for bad, kind in (("1.5", ValueError), ("nan", ValueError), ("inf", ValueError), ("abc", TypeError),
                      ("4/2", TypeError), ("1e5000", ValueError)):  # not a 5,000-digit integer
        with pytest.raises(kind, match=rf"n must be an integer >= 0; got '{bad}'$"):
            check_int("n", bad, 0)
    assert check_int("n", "1e30", 1) == 10 ** 30 and check_int("n", "1e400", 1) == 10 ** 400  # exactly
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 10\]; got 1e400$"):
        check_int("n", "1e400", 1, 10)


def test_seeds_are_bounded_and_named_not_overflowed_inside_torch():
    from dovlib.params import MAX_SEED, check_seed
    from dovlib.report import start_notebook

    assert check_seed("7") == 7 and check_seed(MAX_SEED) == MAX_SEED
    for bad in (MAX_SEED + 1, 1e20, 2 ** 64):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2147483647\]"):
            check_seed(bad)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2147483647\]; got 1e20$"):
        start_notebook("smoke", "1e20", "cpu")  # used to fail in torch: "Overflow when unpacking long long"


def test_profile_refuses_an_odd_gen_batch_and_non_ascii_device_digits_by_field():
    with pytest.raises(ValueError, match=r"profile field gen_batch must be an even integer >= 2 .*got 3"):
        get_profile("smoke:gen_batch=3")
    assert get_profile("smoke:gen_batch=4").gen_batch == 4
    with pytest.raises(ValueError, match=r"profile field device must be .*got 'cuda:\u0663'"):
        get_profile("quick:device=cuda:\u0663")  # an Arabic-Indic 3: torch refuses it later without the field
    assert get_profile("quick:device=cuda:1").device == "cuda:1"


@pytest.mark.parametrize("field, low", [("n_train", 1), ("epochs", 1), ("batch_size", 1), ("width", 1),
                                        ("gen_iters", 1), ("n_models", 1), ("amuse_images", 1),
                                        ("amuse_subsets", 1), ("hidden_steps", 1)])
def test_every_integer_profile_field_is_refused_below_its_minimum_and_as_a_bool(field, low):
    message = f"profile field {field} must be an integer >= {low}; got "
    with pytest.raises(ValueError, match=re.escape(f"{message}{low - 1}")):
        get_profile("smoke", **{field: low - 1})
    with pytest.raises(ValueError, match=re.escape(f"{message}True")):
        get_profile("smoke", **{field: True})  # a bool is not a budget, though True == 1
    assert getattr(get_profile("smoke", **{field: low}), field) == low


def test_profile_device_lr_and_none_fields_are_checked_whole():
    from dataclasses import replace

    for device in ("cpu0", "cuda:1x", "autox", "mps "):  # a prefix of an allowed device is not one
        with pytest.raises(ValueError, match="profile field device must be 'auto', 'cpu'"):
            get_profile("smoke", device=device)
    with pytest.raises(ValueError, match="profile field lr must be a finite number > 0; got inf"):
        get_profile("smoke:lr=inf")
    with pytest.raises(ValueError, match="profile field epochs must be an integer >= 1; got None"):
        replace(PROFILES["smoke"], epochs=None)  # None means "the whole split" for n_train and n_test only
    assert replace(PROFILES["smoke"], n_test=None).n_test is None


def test_profile_string_overrides_refuse_the_name_and_read_whole_split_fields_as_integers():
    with pytest.raises(ValueError, match="profile override 'name=paper' must be field=value"):
        get_profile("smoke:name=paper")
    p = get_profile("quick:n_train=5000,n_test=1000")  # quick's own value is None: the text is still an integer
    assert (p.n_train, p.n_test) == (5000, 1000) and isinstance(p.n_train, int)


def test_fractions_have_at_most_one_slash_and_eps_starts_at_one_grey_level():
    with pytest.raises(ValueError, match=r"rate must be a number in \(0, 1\].*could not read '1/2/4'"):
        parse_rate("1/2/4")
    assert parse_eps("1/255") == pytest.approx(1 / 255)  # one grey level: the smallest budget
    for small in ("0.6/255", 0.5 / 255):
        with pytest.raises(ValueError, match=r"eps must be at least 1/255 \(one grey level"):
            parse_eps(small)


def test_profile_refuses_a_cuda_device_without_its_index():
    with pytest.raises(ValueError, match=r"profile field device must be .*got 'cuda:'"):
        get_profile("quick:device=cuda:")


def test_check_int_refuses_tiny_non_integers_whatever_their_exponent():
    """'1e-400' was read through a float as 0.0 and accepted as the integer 0; and '1e31' became its float neighbour."""
    assert check_int("x", "1e31", 0) == 10 ** 31 and check_int("x", "0e-5000", 0) == 0
    for text in ("1e-31", "1e-400", "1e-5000", "5e-2000"):
        with pytest.raises(ValueError, match="must be an integer"):
            check_int("x", text, 0)


def test_budget_note_names_each_setting_not_the_papers_beside_the_papers():
    """Notebook 08's Table 1 caption said '2 training steps per model, ..., 16 channels' beside the AMUSE authors'
    numbers without saying that the paper's budget is 20,000 steps and 64 channels: budget_note says so."""
    from dovlib.params import budget_note

    note = budget_note({"training steps": (2, 20000), "channels": (16, 64), "image side": (128, 128),
                        "scales": ([36], [36, 30, 20])})
    assert note == "budget not the paper's: training steps 2 (paper 20000), channels 16 (paper 64), scales 36 (paper " \
                   "36, 30, 20)"
    assert budget_note({"messages": (10, 10), "scales": ((36, 30, 20), [36, 30, 20])}) == ""  # the paper's: nothing


@pytest.mark.parametrize("settings, words", [
    ({"steps": 2}, "steps"), ({"steps": (2,)}, "steps"), ({"steps": (2, 20000, 3)}, "steps"),
    ([("steps", (2, 20000))], "dict"), ({3: (2, 20000)}, "name")])
def test_budget_note_refuses_settings_that_are_not_name_to_used_paper_pairs(settings, words):
    """budget_note unpacked each value as (used, paper): a bare number raised 'cannot unpack non-iterable int', a
    3-tuple 'too many values to unpack', neither naming the setting; now the error names it and the shape wanted."""
    from dovlib.params import budget_note

    with pytest.raises((ValueError, TypeError), match=words) as err:
        budget_note(settings)
    assert "(used, paper)" in str(err.value) or "dict" in str(err.value)
