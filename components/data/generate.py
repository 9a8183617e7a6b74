"""The seeded demo e-commerce world (``lrem data generate``).

One call writes the four files of :mod:`components.data.schema`: a catalog of items, the
queries (five categories, split by query into train/eval, plus dev queries (``world.dev_fraction``):
training intents said again as the traffic says them, read only by the reasoning router, with routing.use_dev), the
relevance judgments, and the world's knowledge (read by the teacher only).

The hard categories (``qa``, ``alternative``, ``knowledge``) are built so that lexical
matching cannot solve them: no word of such a query (by :func:`words`) appears in the
title of any of its relevant items. The vocabularies below are written for that, and the
generator also rejects any sampled query that breaks the rule.

Determinism: everything random comes from one ``random.Random(seed)`` (the dev split from streams
of its own, drawn last, so it never changes a train or eval row); the code never
iterates over a set and every file is written with sorted keys, so one seed gives
byte-identical files on every run and in every process (DVC hashes the folder).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from components.config import CATEGORIES, WorldConfig
from components.data import schema
from components.data.io import write_jsonl
from components.data.phrasing import HELDOUT_WORDINGS, WORDINGS, Phrased, Phraser

_WORD_RE = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens: the tokenisation the no-overlap rule is measured with."""
    return _WORD_RE.findall(text.lower())


# ---------------------------------------------------------------------------------------
# Vocabulary: product types. An attribute is (name, values, position): "pre" values go
# before the product-type words of a title, "post" values (sizes, capacities) after.
# Only "pre" attributes are negated by `negative` queries.

C_OUT = ("black", "olive", "orange", "navy", "grey", "red")
C_BASIC = ("black", "white", "grey", "navy", "red", "blue", "green")
C_HOME = ("white", "beige", "grey", "sage", "charcoal", "cream")
C_FASH = ("black", "navy", "burgundy", "camel", "grey", "white", "pink")
C_TECH = ("black", "white", "silver", "blue", "pink")


@dataclass(frozen=True)
class ProductType:
    name: str
    department: str
    price: tuple[float, float]  # typical price range of standard brands
    synonyms: tuple[str, ...]
    keywords: tuple[str, ...]
    attributes: tuple[tuple[str, tuple[str, ...], str], ...]
    uses: tuple[str, ...]  # needs this type alone solves (qa queries)


def _pt(name, department, price, synonyms, keywords, attributes, uses) -> ProductType:
    return ProductType(name, department, price, tuple(synonyms), tuple(keywords),
                       tuple((a, tuple(v), p) for a, v, p in attributes), tuple(uses))


PRODUCT_TYPES: tuple[ProductType, ...] = (
    # --- Outdoors
    _pt("Hiking Backpack", "Outdoors", (40, 160), ["trekking pack", "daypack", "rucksack"],
        ["trail pack", "hydration sleeve", "hip belt"],
        [("color", C_OUT, "pre"), ("material", ["nylon", "polyester", "canvas", "ripstop"], "pre"),
         ("capacity", ["20L", "30L", "40L", "55L"], "post")],
        ["carry snacks and layers on a long walk in the hills", "haul my gear up a mountain path"]),
    _pt("Camping Tent", "Outdoors", (60, 400), ["dome tent", "backpacking tent", "shelter"],
        ["rainfly", "campsite", "tent poles"],
        [("color", ["green", "orange", "grey", "olive", "blue"], "pre"),
         ("feature", ["waterproof", "ultralight", "instant", "four season"], "pre"),
         ("sleeps", ["1 person", "2 person", "3 person", "4 person", "6 person"], "post")],
        ["sleep outdoors protected from wind and rain", "spend the night at the campground"]),
    _pt("Sleeping Bag", "Outdoors", (40, 300), ["sleep sack", "mummy bag"],
        ["insulation", "overnight trip", "compression sack"],
        [("color", C_OUT, "pre"), ("fill", ["down", "synthetic", "fleece"], "pre"),
         ("rating", ["20 degree", "30 degree", "40 degree"], "post")],
        ["stay warm at night while camping under the stars", "rest comfortably in a chilly tent"]),
    _pt("Headlamp", "Outdoors", (15, 70), ["head torch", "headlight"], ["lumens", "night hiking", "flashlight"],
        [("color", ["black", "red", "orange", "blue"], "pre"), ("power", ["rechargeable", "battery"], "pre"),
         ("output", ["200 lumen", "350 lumen", "500 lumen", "1000 lumen"], "post")],
        ["see where i am walking after dark hands free", "read in my tent without holding a torch"]),
    _pt("Trekking Poles", "Outdoors", (30, 180), ["hiking sticks", "walking poles"],
        ["knee support", "trail stability", "collapsible"],
        [("material", ["aluminum", "carbon"], "pre"), ("grip", ["cork", "foam", "rubber"], "pre"),
         ("color", ["black", "blue", "red", "green"], "pre")],
        ["take pressure off my knees on steep descents", "keep my balance crossing streams on a hike"]),
    _pt("Camping Stove", "Outdoors", (30, 200), ["backpacking stove", "gas burner"],
        ["outdoor cooking", "fuel canister", "simmer control"],
        [("fuel", ["propane", "butane", "wood", "multi fuel"], "pre"),
         ("material", ["stainless steel", "titanium", "aluminum"], "pre"),
         ("burners", ["1 burner", "2 burner"], "post")],
        ["cook a hot meal at the campground", "boil water in the wilderness"]),
    # --- Sports
    _pt("Tennis Racket", "Sports", (30, 250), ["tennis racquet", "racquet"], ["court", "strings", "grip tape"],
        [("material", ["graphite", "aluminum", "carbon"], "pre"), ("color", ["black", "white", "blue", "red", "yellow"], "pre"),
         ("weight", ["260g", "280g", "300g", "320g"], "post")],
        ["improve my serve and backhand", "hit balls over a net on a clay court"]),
    _pt("Yoga Mat", "Sports", (20, 120), ["exercise mat", "pilates mat"], ["stretching", "non slip", "workout"],
        [("material", ["natural rubber", "tpe", "cork", "pvc"], "pre"),
         ("color", ["purple", "teal", "black", "pink", "grey", "blue"], "pre"),
         ("thickness", ["4mm", "6mm", "8mm"], "post")],
        ["practice sun salutations at home", "cushion my knees during floor stretches"]),
    _pt("Dumbbell Set", "Sports", (30, 400), ["hand weights", "free weights"], ["strength training", "home gym", "bicep curls"],
        [("style", ["adjustable", "hex", "fixed"], "pre"), ("material", ["cast iron", "rubber", "neoprene", "chrome"], "pre"),
         ("weight", ["10kg", "20kg", "30kg", "40kg"], "post")],
        ["build arm muscle at home", "strength workouts without paying for a gym membership"]),
    _pt("Bike Helmet", "Sports", (30, 250), ["cycling helmet", "bicycle helmet"], ["road cycling", "commuter", "mips"],
        [("color", C_BASIC, "pre"), ("style", ["road", "mountain", "urban"], "pre"),
         ("size", ["small", "medium", "large"], "post")],
        ["protect my head while cycling to work", "stay safe riding trails on two wheels"]),
    _pt("Swim Goggles", "Sports", (10, 60), ["swimming goggles", "pool goggles"], ["lap swimming", "anti fog", "open water"],
        [("lens", ["mirrored", "clear", "tinted", "polarized"], "pre"), ("color", ["black", "blue", "pink", "white"], "pre"),
         ("fit", ["adult", "junior"], "post")],
        ["keep chlorine out of my eyes doing laps", "see clearly underwater"]),
    _pt("Soccer Ball", "Sports", (15, 160), ["football", "futbol"], ["pitch", "match ball", "training ball"],
        [("color", ["white", "yellow", "orange", "blue"], "pre"), ("material", ["pu leather", "synthetic", "rubber"], "pre"),
         ("size", ["size 3", "size 4", "size 5"], "post")],
        ["practice penalty kicks in the park", "play a pickup game on the lawn with friends"]),
    _pt("Boxing Gloves", "Sports", (25, 180), ["sparring gloves", "punching gloves"], ["heavy bag", "kickboxing", "mitts"],
        [("material", ["leather", "synthetic", "vinyl"], "pre"), ("color", ["red", "black", "blue", "white", "gold"], "pre"),
         ("weight", ["10oz", "12oz", "14oz", "16oz"], "post")],
        ["protect my knuckles when hitting a heavy bag", "start sparring at a fight club"]),
    # --- Kitchen
    _pt("Travel Mug", "Kitchen", (12, 45), ["tumbler", "commuter cup"], ["insulated", "spill proof", "double wall"],
        [("color", C_BASIC, "pre"), ("material", ["stainless steel", "ceramic", "bamboo", "glass"], "pre"),
         ("capacity", ["350ml", "475ml", "590ml"], "post")],
        ["drink tea on the train without spilling", "sip a latte in the car"]),
    _pt("Vacuum Flask", "Kitchen", (15, 60), ["thermos", "insulated bottle"], ["hot drinks", "leak proof", "double wall"],
        [("color", C_OUT, "pre"), ("material", ["stainless steel", "titanium"], "pre"),
         ("capacity", ["500ml", "750ml", "1000ml"], "post")],
        ["keep soup warm until lunchtime", "sip hot cocoa on a winter hike"]),
    _pt("Chef Knife", "Kitchen", (25, 250), ["kitchen knife", "cook knife", "gyuto"], ["chopping", "slicing", "sharp blade"],
        [("steel", ["german steel", "japanese steel", "damascus", "ceramic"], "pre"),
         ("handle", ["wood", "pakkawood", "resin", "micarta"], "pre"),
         ("length", ["6 inch", "8 inch", "10 inch"], "post")],
        ["dice onions quickly and safely", "slice tomatoes paper thin"]),
    _pt("Blender", "Kitchen", (30, 300), ["smoothie maker", "food mixer"], ["puree", "crushing ice", "shakes"],
        [("style", ["countertop", "personal", "immersion"], "pre"), ("color", C_TECH, "pre"),
         ("power", ["600w", "900w", "1200w", "1500w"], "post")],
        ["make smoothies in the morning", "crush ice for frozen drinks"]),
    _pt("Cast Iron Skillet", "Kitchen", (20, 180), ["frying pan", "fry pan", "griddle pan"], ["searing", "cookware", "seasoned"],
        [("finish", ["pre seasoned", "enameled"], "pre"), ("color", ["black", "red", "blue", "cream"], "pre"),
         ("size", ["8 inch", "10 inch", "12 inch"], "post")],
        ["sear a steak with a crispy crust", "bake cornbread in the oven"]),
    _pt("Teapot", "Kitchen", (15, 120), ["tea kettle", "infuser pot"], ["loose leaf", "brewing", "tea set"],
        [("material", ["porcelain", "cast iron", "glass", "stoneware"], "pre"), ("color", C_HOME, "pre"),
         ("capacity", ["600ml", "900ml", "1200ml"], "post")],
        ["brew loose leaf tea for guests", "serve oolong to visitors in the afternoon"]),
    _pt("Espresso Machine", "Kitchen", (80, 900), ["coffee maker", "espresso maker", "barista machine"],
        ["latte", "cappuccino", "crema", "milk frother"],
        [("style", ["manual", "semi automatic", "super automatic", "capsule"], "pre"), ("color", ["black", "silver", "red", "white"], "pre"),
         ("pressure", ["15 bar", "19 bar", "20 bar"], "post")],
        ["pull a shot for a cappuccino at home", "make cafe style coffee in my kitchen"]),
    _pt("Cutting Board", "Kitchen", (12, 90), ["chopping board", "carving board"], ["meal prep", "butcher block"],
        [("material", ["bamboo", "walnut", "maple", "plastic", "teak"], "pre"), ("feature", ["reversible", "juice groove"], "pre"),
         ("size", ["small", "medium", "large"], "post")],
        ["protect the countertop while chopping vegetables", "carve a roast chicken neatly"]),
    # --- Home
    _pt("Scented Candle", "Home", (10, 60), ["aroma candle", "jar candle"], ["fragrance", "ambience", "wax melt"],
        [("scent", ["lavender", "vanilla", "sandalwood", "citrus", "sea salt", "pine"], "pre"),
         ("wax", ["soy", "beeswax", "coconut"], "pre"), ("size", ["8oz", "12oz", "16oz"], "post")],
        ["make the living room smell nice", "set a relaxing evening mood with a soft flickering glow"]),
    _pt("Bath Towel", "Home", (15, 90), ["bath sheet", "shower towel"], ["absorbent", "bathroom linen", "plush"],
        [("material", ["cotton", "linen", "bamboo", "microfiber"], "pre"), ("color", C_HOME, "pre"),
         ("pack", ["2 pack", "4 pack", "6 pack"], "post")],
        ["dry off after a shower", "wrap up after a swim at the pool"]),
    _pt("Duvet", "Home", (40, 350), ["comforter", "quilt", "doona"], ["bedding", "all season", "duvet cover"],
        [("fill", ["goose down", "duck down", "microfiber", "wool"], "pre"),
         ("warmth", ["lightweight", "medium weight", "heavyweight"], "pre"),
         ("size", ["twin", "full", "queen", "king"], "post")],
        ["stay warm in bed during winter nights", "cozy up under something fluffy at bedtime"]),
    _pt("Table Lamp", "Home", (20, 200), ["desk lamp", "bedside lamp", "reading light"], ["lighting", "lampshade", "dimmer"],
        [("base", ["ceramic", "brass", "wood", "glass", "marble"], "pre"), ("color", C_HOME, "pre"),
         ("feature", ["dimmable", "touch control", "usb port"], "pre")],
        ["read in bed in the evening", "brighten a dark corner of the bedroom"]),
    _pt("Humidifier", "Home", (25, 180), ["mist maker", "air humidifier"], ["dry air", "moisture", "nursery air"],
        [("style", ["cool mist", "warm mist", "ultrasonic", "evaporative"], "pre"), ("color", ["white", "black", "grey"], "pre"),
         ("tank", ["2l", "4l", "6l"], "post")],
        ["add moisture to dry bedroom air in winter", "relieve a stuffy nose and cracked lips overnight"]),
    _pt("Vacuum Cleaner", "Home", (80, 700), ["hoover", "stick vacuum", "cordless vac"], ["carpet cleaning", "suction", "dust"],
        [("style", ["cordless stick", "upright", "canister", "robot"], "pre"), ("color", ["grey", "purple", "red", "black"], "pre"),
         ("power", ["150w", "250w", "450w"], "post")],
        ["pick up pet hair from the carpet", "clean crumbs off the floor"]),
    # --- Furniture
    _pt("Office Chair", "Furniture", (80, 600), ["desk chair", "task chair", "computer chair"],
        ["ergonomic", "lumbar support", "swivel"],
        [("color", ["black", "grey", "white", "blue"], "pre"), ("material", ["mesh", "leather", "fabric", "velvet"], "pre"),
         ("feature", ["adjustable armrests", "headrest", "reclining"], "pre")],
        ["sit comfortably through long work days at my desk", "stop back pain from working at a computer"]),
    _pt("Sofa", "Furniture", (300, 2500), ["couch", "settee", "loveseat"], ["living room seating", "lounge", "sectional"],
        [("color", ["grey", "navy", "green", "beige", "cream", "charcoal"], "pre"),
         ("upholstery", ["velvet", "linen", "leather", "boucle", "microfiber"], "pre"),
         ("arms", ["armless", "rolled arm", "track arm"], "pre"), ("seats", ["2 seater", "3 seater", "4 seater"], "post")],
        ["seat the whole family in the lounge", "stretch out and watch movies in comfort"]),
    _pt("Bookshelf", "Furniture", (40, 400), ["bookcase", "shelving unit", "book rack"], ["storage", "display shelves", "library"],
        [("material", ["oak", "walnut", "pine", "metal", "particleboard"], "pre"), ("color", ["white", "black", "natural", "grey"], "pre"),
         ("tiers", ["3 tier", "4 tier", "5 tier"], "post")],
        ["store and display my book collection", "organize novels and photo frames in the study"]),
    _pt("Standing Desk", "Furniture", (150, 900), ["sit stand desk", "height adjustable desk"], ["ergonomic", "workstation", "motorized"],
        [("top", ["bamboo", "walnut", "white laminate", "oak"], "pre"), ("frame", ["electric", "manual crank"], "pre"),
         ("width", ["48 inch", "55 inch", "60 inch", "72 inch"], "post")],
        ["work on my feet instead of sitting all day", "alternate between sitting and being upright while working"]),
    _pt("Bar Stool", "Furniture", (40, 300), ["counter stool", "kitchen stool"], ["breakfast bar", "high seating"],
        [("material", ["wood", "metal", "rattan", "velvet"], "pre"), ("color", ["black", "natural", "white", "green"], "pre"),
         ("height", ["24 inch", "26 inch", "30 inch"], "post")],
        ["sit at the kitchen island", "add tall seats to the breakfast counter"]),
    _pt("Bed Frame", "Furniture", (120, 1200), ["platform bed", "bedstead"], ["bedroom", "headboard", "slats"],
        [("material", ["solid wood", "metal", "upholstered", "rattan"], "pre"), ("color", ["white", "black", "walnut", "grey"], "pre"),
         ("size", ["twin", "full", "queen", "king"], "post")],
        ["lift my mattress off the floor", "support a mattress in the guest room"]),
    # --- Electronics
    _pt("Wireless Earbuds", "Electronics", (25, 300), ["true wireless earphones", "in ear headphones", "earphones"],
        ["bluetooth audio", "charging case", "music"],
        [("feature", ["noise cancelling", "sweatproof", "transparency mode"], "pre"), ("color", ["black", "white", "navy", "pink"], "pre"),
         ("battery", ["20 hour", "30 hour", "40 hour"], "post")],
        ["listen to music on the subway without cords", "take calls hands free while jogging"]),
    _pt("Power Bank", "Electronics", (15, 120), ["portable charger", "battery pack"], ["usb c", "fast charging", "phone charging"],
        [("color", C_TECH, "pre"), ("feature", ["magnetic", "solar", "slim"], "pre"),
         ("capacity", ["5000mah", "10000mah", "20000mah", "26800mah"], "post")],
        ["charge my phone when there is no outlet", "keep devices topped up on a long flight"]),
    _pt("Smartwatch", "Electronics", (60, 500), ["fitness watch", "smart watch"], ["heart rate", "step counter", "notifications"],
        [("color", C_TECH, "pre"), ("band", ["silicone", "leather", "metal", "nylon"], "pre"),
         ("case", ["41mm", "45mm", "47mm"], "post")],
        ["track my pulse and steps from my wrist", "see phone alerts without taking out my phone"]),
    _pt("Bluetooth Speaker", "Electronics", (25, 350), ["portable speaker", "wireless speaker"], ["bass", "outdoor audio", "party"],
        [("feature", ["waterproof", "rugged", "360 sound"], "pre"), ("color", ["black", "blue", "red", "teal"], "pre"),
         ("battery", ["12 hour", "20 hour", "24 hour"], "post")],
        ["play music loud at a beach party", "fill the backyard with tunes from my phone"]),
    _pt("Mechanical Keyboard", "Electronics", (40, 250), ["gaming keyboard", "clicky keyboard"], ["switches", "keycaps", "typing"],
        [("switch", ["linear", "tactile", "clicky"], "pre"), ("layout", ["tenkeyless", "full size", "60 percent", "75 percent"], "pre"),
         ("color", ["black", "white", "grey", "pink"], "pre")],
        ["type faster with a satisfying feel", "upgrade my pc setup for competitive games"]),
    _pt("Webcam", "Electronics", (25, 200), ["web camera", "usb camera"], ["video calls", "streaming", "conferencing"],
        [("feature", ["autofocus", "privacy shutter", "wide angle"], "pre"), ("color", ["black", "white"], "pre"),
         ("resolution", ["720p", "1080p", "4k"], "post")],
        ["look sharp on video calls", "join online meetings from my desktop"]),
    _pt("Ebook Reader", "Electronics", (80, 350), ["e reader", "digital reader"], ["ebooks", "e ink", "reading"],
        [("feature", ["waterproof", "warm light", "backlit"], "pre"), ("color", ["black", "white", "sage"], "pre"),
         ("screen", ["6 inch", "7 inch", "10 inch"], "post")],
        ["carry hundreds of novels on vacation", "enjoy books in bright sunshine without glare"]),
    # --- Apparel
    _pt("Rain Jacket", "Apparel", (40, 300), ["raincoat", "waterproof shell", "anorak"], ["outerwear", "windbreaker", "gore tex"],
        [("color", C_OUT, "pre"), ("feature", ["hooded", "packable", "breathable", "insulated"], "pre"),
         ("size", ["small", "medium", "large", "xl"], "post")],
        ["stay dry walking in a downpour", "keep drizzle off on a blustery day"]),
    _pt("Wool Sweater", "Apparel", (40, 250), ["jumper", "knit pullover"], ["knitwear", "cable knit"],
        [("wool", ["merino", "lambswool", "cashmere blend", "alpaca"], "pre"), ("color", C_FASH, "pre"),
         ("neck", ["crew neck", "v neck", "turtleneck"], "pre")],
        ["layer up on chilly autumn days", "stay cozy when the office is cold"]),
    _pt("Running Shorts", "Apparel", (15, 70), ["athletic shorts", "jogging shorts"], ["gym", "moisture wicking", "split hem"],
        [("color", C_BASIC, "pre"), ("feature", ["lined", "zip pocket", "reflective"], "pre"),
         ("inseam", ["3 inch", "5 inch", "7 inch"], "post")],
        ["stay cool on summer jogs", "train for a 10k in hot weather"]),
    _pt("Down Parka", "Apparel", (120, 800), ["winter coat", "puffer coat", "puffer jacket"], ["outerwear", "cold weather", "insulated"],
        [("fill", ["duck down", "goose down", "synthetic"], "pre"), ("color", C_FASH, "pre"),
         ("length", ["hip length", "knee length", "mid thigh"], "pre")],
        ["survive a freezing winter commute", "stay toasty waiting at a bus stop in january"]),
    _pt("Swimsuit", "Apparel", (20, 150), ["bathing suit", "swimwear"], ["beachwear", "pool", "chlorine resistant"],
        [("style", ["one piece", "bikini", "tankini", "swim trunks"], "pre"), ("color", C_FASH, "pre"),
         ("fabric", ["nylon", "recycled polyester", "spandex"], "pre")],
        ["go swimming at the beach", "take a dip at the lake this summer"]),
    _pt("Beanie", "Apparel", (10, 60), ["knit hat", "winter hat", "toque"], ["headwear", "warm", "ribbed"],
        [("material", ["wool", "acrylic", "cashmere", "fleece"], "pre"), ("color", C_FASH, "pre"),
         ("style", ["cuffed", "slouchy", "pom"], "pre")],
        ["keep my ears warm in the snow", "cover my head on a frosty morning run"]),
    # --- Footwear
    _pt("Running Shoes", "Footwear", (50, 220), ["running sneakers", "trainers", "jogging shoes"], ["cushioning", "road running", "marathon"],
        [("upper", ["mesh", "knit", "leather", "synthetic"], "pre"), ("color", C_BASIC, "pre"),
         ("size", ["size 7", "size 8", "size 9", "size 10", "size 11"], "post")],
        ["train for my first marathon", "jog on pavement without sore feet"]),
    _pt("Hiking Boots", "Footwear", (80, 320), ["trail boots", "trekking boots"], ["ankle support", "vibram", "lugged sole"],
        [("material", ["leather", "suede", "nubuck", "synthetic"], "pre"), ("color", ["brown", "black", "grey", "tan"], "pre"),
         ("feature", ["waterproof", "insulated", "lightweight"], "pre")],
        ["protect my ankles on rocky mountain paths", "keep my feet dry on muddy trails"]),
    _pt("Sandals", "Footwear", (15, 140), ["flip flops", "sliders"], ["summer footwear", "open toe"],
        [("material", ["leather", "rubber", "cork", "eva"], "pre"), ("color", ["black", "brown", "tan", "white", "navy"], "pre"),
         ("style", ["slide", "sport", "gladiator", "thong"], "pre")],
        ["keep my feet cool at the beach", "keep my feet breezy in a heatwave"]),
    _pt("Slippers", "Footwear", (15, 110), ["house shoes", "moccasins"], ["cozy", "indoor", "memory foam"],
        [("material", ["shearling", "fleece", "felt", "wool"], "pre"), ("color", ["grey", "brown", "navy", "pink", "cream"], "pre"),
         ("style", ["scuff", "bootie", "clog"], "pre")],
        ["keep my toes warm around the house", "pad around indoors on cold floors"]),
    _pt("Rain Boots", "Footwear", (25, 160), ["wellies", "wellington boots", "gumboots"], ["puddles", "waterproof footwear"],
        [("material", ["natural rubber", "pvc", "neoprene"], "pre"), ("color", ["yellow", "green", "navy", "black", "red"], "pre"),
         ("height", ["ankle", "mid calf", "tall"], "pre")],
        ["splash through puddles without wet socks", "walk the muddy farmyard"]),
    _pt("Dress Shoes", "Footwear", (60, 400), ["oxfords", "formal shoes", "derby shoes"], ["office footwear", "wedding", "suit"],
        [("material", ["calfskin", "patent", "suede"], "pre"), ("color", ["black", "brown", "burgundy", "tan"], "pre"),
         ("style", ["oxford", "derby", "loafer", "brogue"], "pre")],
        ["look polished at a formal wedding", "complete my suit for a job interview"]),
    # --- Beauty
    _pt("Sunscreen", "Beauty", (8, 45), ["sunblock", "sun cream", "spf lotion"], ["uv protection", "broad spectrum", "reef safe"],
        [("style", ["mineral", "chemical", "sport"], "pre"), ("form", ["lotion", "spray", "stick", "gel"], "pre"),
         ("spf", ["spf 30", "spf 50", "spf 70"], "post")],
        ["avoid sunburn at the beach", "protect my face from uv rays"]),
    _pt("Hair Dryer", "Beauty", (20, 400), ["blow dryer", "hairdryer"], ["styling", "salon", "diffuser"],
        [("feature", ["ionic", "ceramic", "tourmaline", "compact"], "pre"), ("color", ["black", "pink", "white", "purple"], "pre"),
         ("power", ["1200w", "1800w", "2000w"], "post")],
        ["dry my locks quickly after washing", "get a salon blowout look at home"]),
    _pt("Electric Toothbrush", "Beauty", (20, 250), ["power toothbrush", "sonic toothbrush"], ["oral care", "plaque removal", "brush heads"],
        [("style", ["sonic", "oscillating", "rotating"], "pre"), ("color", ["white", "black", "blue", "pink"], "pre"),
         ("modes", ["3 mode", "5 mode"], "post")],
        ["keep my teeth and gums healthy", "remove plaque better than brushing by hand"]),
    _pt("Face Moisturizer", "Beauty", (10, 120), ["face cream", "moisturizing lotion", "day cream"], ["skincare", "hydration", "spf"],
        [("skin", ["dry skin", "oily skin", "sensitive skin", "combination skin"], "pre"),
         ("ingredient", ["hyaluronic acid", "ceramide", "niacinamide", "shea butter"], "pre"),
         ("size", ["50ml", "100ml"], "post")],
        ["soothe flaky patches on my cheeks", "add a hydrating step to my morning routine"]),
    _pt("Electric Shaver", "Beauty", (30, 300), ["electric razor", "beard trimmer"], ["grooming", "shave", "foil head"],
        [("style", ["rotary", "foil"], "pre"), ("feature", ["wet dry", "cordless", "precision trimmer"], "pre"),
         ("color", ["black", "silver", "blue"], "pre")],
        ["get a close shave every morning", "tidy up my stubble"]),
    # --- Pets
    _pt("Dog Leash", "Pets", (10, 60), ["dog lead", "pet leash"], ["walks", "harness", "retractable"],
        [("material", ["nylon", "leather", "rope", "biothane"], "pre"), ("color", C_BASIC, "pre"),
         ("length", ["4 ft", "6 ft", "16 ft"], "post")],
        ["walk my puppy safely around the block", "keep my pup close on busy streets"]),
    _pt("Cat Litter Box", "Pets", (15, 500), ["litter tray", "cat toilet"], ["kitty litter", "odor control", "scoop"],
        [("style", ["hooded", "open", "self cleaning", "top entry"], "pre"), ("color", ["white", "grey", "blue", "beige"], "pre"),
         ("size", ["standard", "jumbo"], "post")],
        ["potty train my new kitten", "give my kitty an indoor bathroom"]),
    _pt("Pet Bed", "Pets", (20, 200), ["dog bed", "cat bed"], ["orthopedic", "cozy", "crate mat"],
        [("material", ["memory foam", "plush", "faux fur", "canvas"], "pre"), ("shape", ["round", "rectangular", "bolster"], "pre"),
         ("size", ["small", "medium", "large"], "post")],
        ["give my puppy a comfy spot to nap", "give my old labrador somewhere soft to sleep"]),
    _pt("Aquarium", "Pets", (30, 600), ["fish tank"], ["filter", "tropical fish", "aquascape"],
        [("material", ["glass", "acrylic"], "pre"), ("feature", ["led lid", "filter included", "curved front"], "pre"),
         ("capacity", ["10 gallon", "20 gallon", "40 gallon", "75 gallon"], "post")],
        ["keep goldfish at home", "set up a home for guppies and neon tetras"]),
    # --- Garden
    _pt("Garden Hose", "Garden", (20, 120), ["water hose", "hosepipe"], ["watering", "spray nozzle"],
        [("style", ["expandable", "rubber", "vinyl", "flat"], "pre"), ("color", ["green", "black", "blue"], "pre"),
         ("length", ["25 ft", "50 ft", "100 ft"], "post")],
        ["rinse off the car and the patio", "reach the far end of the yard with water"]),
    _pt("Pruning Shears", "Garden", (12, 80), ["secateurs", "pruners", "hand pruner"], ["trimming", "gardening tools", "branches"],
        [("style", ["bypass", "anvil", "ratchet"], "pre"), ("handle", ["aluminum", "fiberglass", "steel"], "pre"),
         ("color", ["red", "orange", "green", "black"], "pre")],
        ["trim rose bushes and small branches", "cut back overgrown hedges"]),
    _pt("Lawn Mower", "Garden", (100, 900), ["grass cutter", "mower"], ["yard work", "lawn care", "mulching"],
        [("style", ["cordless", "gas", "push reel", "robotic"], "pre"), ("color", ["green", "red", "orange", "black"], "pre"),
         ("deck", ["16 inch", "20 inch", "21 inch"], "post")],
        ["keep the grass in the yard short", "tidy up an overgrown backyard every weekend"]),
    _pt("Watering Can", "Garden", (10, 80), ["sprinkling can", "plant waterer"], ["houseplants", "indoor plants", "long spout"],
        [("material", ["galvanized steel", "plastic", "copper", "brass"], "pre"), ("color", ["green", "white", "black", "grey"], "pre"),
         ("capacity", ["1l", "5l", "8l"], "post")],
        ["give my houseplants a drink", "water seedlings on the balcony"]),
    # --- Music
    _pt("Acoustic Guitar", "Music", (100, 1500), ["steel string guitar", "folk guitar"], ["strumming", "chords", "fretboard"],
        [("top", ["spruce", "cedar", "mahogany"], "pre"), ("body", ["dreadnought", "concert", "parlor"], "pre"),
         ("finish", ["natural", "sunburst", "black"], "pre")],
        ["strum campfire songs", "learn chords to play folk songs"]),
    _pt("Digital Piano", "Music", (200, 2000), ["electric piano", "keyboard piano", "stage piano"], ["weighted keys", "practice", "sustain pedal"],
        [("color", ["black", "white", "rosewood"], "pre"), ("feature", ["weighted hammer action", "bluetooth", "portable"], "pre"),
         ("keys", ["61 key", "76 key", "88 key"], "post")],
        ["practice scales at night with headphones", "take lessons on ivories at home"]),
    _pt("Violin", "Music", (100, 2000), ["fiddle"], ["bow", "rosin", "orchestra"],
        [("wood", ["spruce", "maple", "ebony"], "pre"), ("finish", ["antique varnish", "natural", "dark"], "pre"),
         ("size", ["full size", "three quarter", "half size"], "post")],
        ["join the school orchestra string section", "play bowed classical music"]),
    _pt("Ukulele", "Music", (30, 400), ["uke"], ["hawaiian", "strings", "strumming"],
        [("size", ["soprano", "concert", "tenor", "baritone"], "pre"), ("wood", ["mahogany", "koa", "spruce"], "pre"),
         ("finish", ["natural", "satin", "gloss"], "pre")],
        ["learn a small four stringed instrument", "play island tunes on a tiny instrument"]),
    # --- Office
    _pt("Fountain Pen", "Office", (15, 300), ["ink pen", "calligraphy pen"], ["nib", "handwriting", "stationery"],
        [("material", ["brass", "resin", "aluminum", "acrylic"], "pre"), ("color", ["black", "navy", "burgundy", "green", "silver"], "pre"),
         ("nib", ["fine nib", "medium nib", "broad nib"], "post")],
        ["write letters with elegant flowing strokes", "improve my cursive handwriting"]),
    _pt("Notebook", "Office", (5, 40), ["journal", "notepad", "planner"], ["stationery", "notes", "bullet journal"],
        [("cover", ["hardcover", "softcover", "leather"], "pre"), ("paper", ["dotted", "lined", "grid", "blank"], "pre"),
         ("size", ["a5", "a4", "pocket"], "post")],
        ["jot down ideas during meetings", "keep a daily diary"]),
    _pt("Desk Organizer", "Office", (10, 80), ["desk caddy", "pen holder", "desktop tray"], ["tidy workspace", "storage"],
        [("material", ["bamboo", "metal mesh", "acrylic", "felt"], "pre"), ("color", ["black", "white", "natural", "grey"], "pre"),
         ("compartments", ["3 compartment", "5 compartment", "7 compartment"], "post")],
        ["tidy up pens and clutter on my workspace", "sort paper clips sticky notes and stationery"]),
    _pt("Paper Shredder", "Office", (40, 300), ["document shredder", "shredding machine"], ["privacy", "cross cut", "home office"],
        [("cut", ["cross cut", "micro cut", "strip cut"], "pre"), ("color", ["black", "white", "silver"], "pre"),
         ("sheets", ["8 sheet", "12 sheet", "18 sheet"], "post")],
        ["destroy old bank statements safely", "get rid of documents with personal details"]),
    # --- Baby
    _pt("Stroller", "Baby", (100, 900), ["pushchair", "pram", "buggy"], ["travel system", "foldable", "infant"],
        [("style", ["jogging", "lightweight", "full size", "double"], "pre"), ("color", ["black", "grey", "navy", "beige"], "pre")],
        ["push my toddler around the park", "take the newborn on walks around town"]),
    _pt("Baby Monitor", "Baby", (30, 300), ["nursery camera", "video monitor"], ["night vision", "nursery", "two way talk"],
        [("style", ["video", "audio", "wifi camera"], "pre"), ("color", ["white", "grey"], "pre"),
         ("display", ["4 inch", "5 inch"], "post")],
        ["check on my newborn from another room", "hear my infant crying at night"]),
    _pt("High Chair", "Baby", (40, 350), ["feeding chair", "toddler seat"], ["mealtime", "weaning", "tray"],
        [("material", ["wood", "plastic", "bamboo"], "pre"), ("style", ["convertible", "foldable", "booster"], "pre"),
         ("color", ["white", "grey", "natural", "sage"], "pre")],
        ["feed my toddler at the dinner table", "keep the baby seated during meals"]),
)

# Needs that several product types answer together (qa queries).
SHARED_USES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("keep my coffee hot during the commute", ("Travel Mug", "Vacuum Flask")),
    ("stay warm on a winter camping trip", ("Sleeping Bag", "Down Parka")),
    ("equip a workout corner in my garage", ("Dumbbell Set", "Yoga Mat")),
    ("get ready for a rainy day", ("Rain Jacket", "Rain Boots")),
    ("prepare for my first overnight trip in the backcountry", ("Camping Tent", "Sleeping Bag", "Camping Stove")),
    ("make working from home more comfortable", ("Office Chair", "Standing Desk")),
    ("water the flower beds out back", ("Garden Hose", "Watering Can")),
    ("get my newborn out of the house", ("Stroller",)),
    ("look after my complexion on a tropical holiday", ("Sunscreen", "Face Moisturizer")),
    ("upgrade my morning grooming routine", ("Electric Toothbrush", "Electric Shaver")),
    ("make my bedroom cozier", ("Duvet", "Table Lamp", "Scented Candle")),
    ("listen to playlists on the go", ("Wireless Earbuds", "Bluetooth Speaker")),
    ("stay charged and connected while traveling", ("Power Bank", "Wireless Earbuds")),
    ("keep my puppy comfortable and happy", ("Dog Leash", "Pet Bed")),
)

# Facts: a phrase that names a product type only through knowledge. `kind` picks the
# wrappers ("activity": gear for ...; "thing": looking for ...).
FACTS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    # (phrase, kind, statement, answer, product types)
    ("the sport played at wimbledon", "activity", "Wimbledon is a tennis championship.", "tennis", ("Tennis Racket",)),
    ("the sport of roland garros", "activity", "Roland Garros hosts the French Open tennis tournament.", "tennis", ("Tennis Racket",)),
    ("the sport serena williams dominated", "activity", "Serena Williams is a tennis champion.", "tennis", ("Tennis Racket",)),
    ("the sport of the fifa world cup", "activity", "The FIFA World Cup is a soccer tournament.", "soccer", ("Soccer Ball",)),
    ("the game pele and maradona played", "activity", "Pele and Maradona were soccer players.", "soccer", ("Soccer Ball",)),
    ("the sport muhammad ali was champion of", "activity", "Muhammad Ali was a boxing champion.", "boxing", ("Boxing Gloves",)),
    ("the sport of the rocky movies", "activity", "The Rocky movies are about a boxer.", "boxing", ("Boxing Gloves",)),
    ("the race known as the tour de france", "activity", "The Tour de France is a road cycling race.", "road cycling", ("Bike Helmet",)),
    ("the sport michael phelps won olympic gold in", "activity", "Michael Phelps is an Olympic swimmer.", "swimming", ("Swim Goggles", "Swimsuit")),
    ("crossing the english channel like matthew webb", "activity", "Matthew Webb swam across the English Channel.", "open water swimming", ("Swim Goggles", "Swimsuit")),
    ("the race first run from marathon to athens", "activity", "The marathon is a 42 km running race.", "marathon running", ("Running Shoes", "Running Shorts")),
    ("the boston race held every april", "activity", "The Boston Marathon is a running race held in April.", "marathon running", ("Running Shoes", "Running Shorts")),
    ("the practice of downward dog and the lotus pose", "activity", "Downward dog and lotus are yoga poses.", "yoga", ("Yoga Mat",)),
    ("the sport arnold schwarzenegger did before hollywood", "activity", "Arnold Schwarzenegger was a bodybuilder.", "bodybuilding", ("Dumbbell Set",)),
    ("climbing kilimanjaro", "activity", "Kilimanjaro is climbed on foot over several days.", "mountain trekking", ("Hiking Boots", "Trekking Poles", "Hiking Backpack")),
    ("walking the appalachian trail end to end", "activity", "The Appalachian Trail is a long distance hiking route.", "long distance hiking", ("Hiking Boots", "Hiking Backpack", "Trekking Poles")),
    ("the camino de santiago pilgrimage", "activity", "The Camino de Santiago is walked over weeks.", "long distance hiking", ("Hiking Boots", "Hiking Backpack")),
    ("a night in yosemite under the stars", "activity", "A night under the stars in Yosemite means camping.", "camping", ("Camping Tent", "Sleeping Bag")),
    ("the survival adventures of bear grylls", "activity", "Bear Grylls is known for wilderness survival and camping.", "wilderness camping", ("Camping Stove", "Headlamp", "Camping Tent")),
    ("exploring caves like a spelunker", "activity", "Spelunkers explore dark caves and need light on their heads.", "caving", ("Headlamp",)),
    ("the hobby celebrated at the chelsea flower show", "activity", "The Chelsea Flower Show celebrates gardening.", "gardening", ("Pruning Shears", "Watering Can")),
    ("the cooking shows of gordon ramsay", "activity", "Gordon Ramsay is a chef.", "professional cooking", ("Chef Knife", "Cast Iron Skillet")),
    ("the italian morning ritual of a short strong coffee", "activity", "Italians drink espresso in the morning.", "espresso", ("Espresso Machine",)),
    ("the british afternoon tea ritual", "activity", "British afternoon tea is brewed in a teapot.", "tea brewing", ("Teapot",)),
    ("the japanese tea ceremony", "activity", "The Japanese tea ceremony brews tea in a pot.", "tea brewing", ("Teapot",)),
    ("the southern tradition of cornbread and fried chicken", "activity", "Southern cornbread and fried chicken are cooked in cast iron.", "cast iron cooking", ("Cast Iron Skillet",)),
    ("the beach culture of bondi", "activity", "Bondi is a famous beach in Sydney.", "beach day", ("Swimsuit", "Sunscreen", "Sandals")),
    ("surfing on the north shore of oahu", "activity", "The North Shore of Oahu is a surfing beach.", "beach day", ("Swimsuit", "Sunscreen")),
    ("the smoothie bowl craze", "activity", "Smoothie bowls are made in a blender.", "smoothies", ("Blender",)),
    ("spending winter in the arctic circle", "activity", "Arctic winters are extremely cold.", "extreme cold", ("Down Parka", "Beanie", "Wool Sweater")),
    ("the monsoon season in mumbai", "activity", "The Mumbai monsoon brings heavy rain.", "heavy rain", ("Rain Jacket", "Rain Boots")),
    ("the glastonbury festival in a muddy field", "activity", "Glastonbury is a muddy camping festival.", "festival camping", ("Rain Boots", "Camping Tent")),
    ("the training of a classical pianist", "activity", "Classical pianists practice on a piano.", "piano", ("Digital Piano",)),
    ("the craft of calligraphy", "activity", "Calligraphy is written with a nib and ink.", "calligraphy", ("Fountain Pen",)),
    ("the practice of bullet journaling", "activity", "Bullet journaling is done in a dotted paper book.", "journaling", ("Notebook",)),
    ("the remote work boom", "activity", "Remote workers need a home workstation.", "home workstation", ("Standing Desk", "Webcam", "Office Chair")),
    ("the hobby of live game streaming on twitch", "activity", "Twitch streamers use a camera and a keyboard.", "streaming", ("Webcam", "Mechanical Keyboard")),
    ("the esports scene", "activity", "Esports players use mechanical keyboards.", "competitive gaming", ("Mechanical Keyboard",)),
    ("the fitness craze of counting 10000 steps a day", "activity", "Steps are counted by a wrist tracker.", "activity tracking", ("Smartwatch",)),
    ("walkies with a new labrador puppy", "activity", "Walking a puppy needs a lead.", "dog walking", ("Dog Leash", "Pet Bed")),
    ("the hobby of keeping tropical fish", "activity", "Tropical fish live in a tank.", "fishkeeping", ("Aquarium",)),
    ("keeping a suburban yard tidy", "activity", "A tidy yard needs mowing and watering.", "yard care", ("Lawn Mower", "Garden Hose")),
    ("the japanese art of bonsai", "activity", "Bonsai trees are pruned and watered by hand.", "bonsai care", ("Pruning Shears", "Watering Can")),
    ("the nightly bedtime reading habit", "activity", "Reading in bed needs a book or an e-reader and a lamp.", "bedtime reading", ("Ebook Reader", "Table Lamp")),
    ("the hygge lifestyle from denmark", "activity", "Hygge is Danish coziness: candles, soft bedding, slippers.", "coziness", ("Scented Candle", "Duvet", "Slippers")),
    ("the spa day at home trend", "activity", "A spa day at home means towels, candles and skincare.", "pampering", ("Bath Towel", "Scented Candle", "Face Moisturizer")),
    ("the new parent night shift", "activity", "New parents watch the nursery at night.", "nursery watch", ("Baby Monitor",)),
    ("the baby led weaning stage", "activity", "Baby led weaning happens at a feeding seat.", "weaning", ("High Chair",)),
    ("the instrument sherlock holmes played", "thing", "Sherlock Holmes played the violin.", "violin", ("Violin",)),
    ("the instrument of the first chair in a string quartet", "thing", "The first chair of a string quartet plays violin.", "violin", ("Violin",)),
    ("the instrument of hawaiian folk music", "thing", "Hawaiian folk music is played on the ukulele.", "ukulele", ("Ukulele",)),
    ("the instrument beethoven wrote the moonlight sonata for", "thing", "The Moonlight Sonata is a piano piece.", "piano", ("Digital Piano",)),
    ("the instrument elton john plays", "thing", "Elton John plays the piano.", "piano", ("Digital Piano",)),
    ("the instrument of bob dylan's early folk songs", "thing", "Early Bob Dylan songs are played on acoustic guitar.", "guitar", ("Acoustic Guitar",)),
    ("the instrument of campfire singalongs", "thing", "Campfire singalongs are played on guitar or ukulele.", "guitar", ("Acoustic Guitar", "Ukulele")),
    ("the appliance dyson made famous", "thing", "Dyson is famous for vacuum cleaners and hair dryers.", "vacuum", ("Vacuum Cleaner", "Hair Dryer")),
    ("the device the kindle popularised", "thing", "The Kindle popularised e-readers.", "ereader", ("Ebook Reader",)),
    ("the gadget that replaced the pedometer", "thing", "Smartwatches count steps.", "wrist tracker", ("Smartwatch",)),
    ("the gadget that replaced the boombox", "thing", "Portable speakers replaced the boombox.", "speaker", ("Bluetooth Speaker",)),
    ("the gadget that replaced the walkman headphones", "thing", "Earbuds replaced the walkman's headphones.", "earbuds", ("Wireless Earbuds",)),
    ("the kitchen tool of a sushi master", "thing", "A sushi master uses a sharp knife on a board.", "sushi knife", ("Chef Knife", "Cutting Board")),
    ("the appliance behind a frozen margarita", "thing", "Frozen margaritas are made in a blender.", "blender", ("Blender",)),
    ("the pan julia child swore by", "thing", "Julia Child cooked in cast iron.", "skillet", ("Cast Iron Skillet",)),
    ("the lamp miners strap to their hats", "thing", "Miners wear lamps on their heads.", "headlamp", ("Headlamp",)),
    ("the pack a sherpa carries", "thing", "Sherpas carry large packs on their backs.", "backpack", ("Hiking Backpack",)),
    ("the shelter at everest base camp", "thing", "Everest base camp is made of tents.", "tent", ("Camping Tent",)),
    ("the footwear of a scottish hillwalker", "thing", "Scottish hillwalkers wear boots for hiking.", "boots", ("Hiking Boots",)),
    ("the footwear worn with a tuxedo", "thing", "A tuxedo is worn with formal shoes.", "formal shoes", ("Dress Shoes",)),
    ("the puffy coat the michelin man resembles", "thing", "The Michelin Man looks like a puffer parka.", "parka", ("Down Parka",)),
    ("the knitwear of aran island fishermen", "thing", "Aran fishermen wear wool jumpers.", "sweater", ("Wool Sweater",)),
    ("the headwear of canadian winters", "thing", "Canadians call a beanie a toque.", "toque", ("Beanie",)),
    ("the seat of a gamer's battlestation", "thing", "Gamers sit on ergonomic desk chairs.", "desk chair", ("Office Chair",)),
    ("the couch from central perk in friends", "thing", "Central Perk in Friends has an orange couch.", "couch", ("Sofa",)),
    ("the furniture freud's patients lay on", "thing", "Freud's patients lay on a couch.", "couch", ("Sofa",)),
    ("what roger federer holds at work", "thing", "Roger Federer plays tennis with a racquet.", "racquet", ("Tennis Racket",)),
    ("what mike tyson wore on his fists", "thing", "Mike Tyson wore boxing gloves.", "gloves", ("Boxing Gloves",)),
    ("the head protection of the peloton", "thing", "Riders in the peloton wear cycling helmets.", "helmet", ("Bike Helmet",)),
    ("what you pick up at the gym for bicep curls", "thing", "Bicep curls are done with dumbbells.", "dumbbells", ("Dumbbell Set",)),
    ("what bikram students roll out in class", "thing", "Bikram yoga students practice on a mat.", "mat", ("Yoga Mat",)),
    ("the job a roomba does", "thing", "A Roomba is a robot vacuum cleaner.", "vacuum", ("Vacuum Cleaner",)),
    ("what paddington wears when it pours", "thing", "Paddington Bear wears wellies and a duffle coat in the rain.", "wellies", ("Rain Boots", "Rain Jacket")),
    ("what shackleton's crew kept their tea hot in", "thing", "Polar explorers kept drinks hot in a thermos.", "thermos", ("Vacuum Flask",)),
)

# Invented world facts: named events and people that exist only in this world.
INVENTED_ACTIVITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tennis", ("Tennis Racket",)),
    ("soccer", ("Soccer Ball",)),
    ("boxing", ("Boxing Gloves",)),
    ("road cycling", ("Bike Helmet",)),
    ("swimming", ("Swim Goggles", "Swimsuit")),
    ("marathon running", ("Running Shoes", "Running Shorts")),
    ("yoga", ("Yoga Mat",)),
    ("weightlifting", ("Dumbbell Set",)),
    ("mountain trekking", ("Hiking Boots", "Trekking Poles")),
    ("camping", ("Camping Tent", "Sleeping Bag")),
)
INVENTED_INSTRUMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("violin", ("Violin",)),
    ("piano", ("Digital Piano",)),
    ("ukulele", ("Ukulele",)),
    ("guitar", ("Acoustic Guitar",)),
)
_PLACE_PARTS = (("harrow", "bram", "ost", "wyl", "craig", "thorn", "aber", "lang", "mere", "dun"),
                ("mere", "holt", "vale", "ford", "wick", "haven", "moor", "by", "stead", "ness"))
_FIRST_NAMES = ("aldric", "brenna", "corwin", "delphine", "emrys", "fenella", "gideon", "hester", "ivo",
                "jessamy", "kestrel", "linnea", "magnus", "nerys", "orla", "percival", "quinta", "rowan")
_LAST_NAMES = ("ashdown", "blackwood", "carrow", "dunmore", "everly", "fairweather", "greaves", "holloway",
               "inchcape", "jarrow", "kilbride", "loxley", "marchbanks", "northcote", "ormsby", "pendry")

# Brand names: invented, built from syllables; each department has standard brands and
# each product type two premium brands of its own.
_BRAND_HEADS = ("lum", "nor", "vel", "kor", "zen", "tal", "bri", "cas", "dor", "fen", "gal", "hal", "jor", "kel",
                "mar", "nov", "pel", "quin", "ros", "sol", "tor", "vir", "wyn", "yar", "zel", "bel", "cor", "dal",
                "ev", "ist", "lor", "myr", "oss", "pax", "ryn", "sil", "tam", "ul", "xan", "zor")
_BRAND_TAILS = ("ora", "peak", "ix", "ento", "ara", "ello", "umi", "aro", "stone", "field", "wick", "ley", "mont",
                "ova", "eon", "ith", "ane", "ura", "ode", "ax", "iva", "enza", "quist", "holm")
N_STANDARD_BRANDS_PER_DEPARTMENT = 8
N_PREMIUM_BRANDS_PER_TYPE = 2

# Query templates.
PLAIN_ORDERS = ("values_first", "values_first", "type_first")
QA_WRAPPERS = ("{n}", "something to {n}", "how can i {n}", "i want to {n}", "what should i buy to {n}",
               "need something to {n}", "help me {n}", "best way to {n}")
ALTERNATIVE_TEMPLATES = ("affordable alternative to {b}", "cheaper option than {b}", "something like {b} but cheaper",
                         "{b} dupe on a budget", "budget {b} alternative", "similar to {b} for less money",
                         "less expensive than {b}", "{b} quality at a lower price")
NEGATIVE_TEMPLATES = ("{t} not {v}", "{t} without {v}", "{t} that is not {v}", "{t} other than {v}",
                      "{t} anything but {v}", "non {v} {t}", "{t} excluding {v}", "{t} no {v}")
KNOWLEDGE_WRAPPERS = {
    "activity": ("gear for {f}", "equipment for {f}", "what do i need for {f}", "getting started with {f}",
                 "gift for someone into {f}", "essentials for {f}"),
    "thing": ("{f}", "looking for {f}", "where to buy {f}", "i want {f}", "shopping for {f}", "gift idea {f}"),
}
BUDGET_WORDS = ("budget", "affordable", "value", "inexpensive", "low cost", "cheap", "economy", "bargain")
NEGATION_WORDS = ("not", "without", "no", "non", "excluding", "other", "than", "anything", "but", "that", "is")


# ---------------------------------------------------------------------------------------
# Building the world


@dataclass
class _Item:
    item_id: str
    title: str
    product_type: str
    department: str
    brand: str
    price: float
    attributes: dict[str, str]

    def row(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "title": self.title, "product_type": self.product_type,
                "department": self.department, "brand": self.brand, "price": self.price,
                "attributes": dict(self.attributes)}


def _display(value: str) -> str:
    """Title form of an attribute value: alphabetic words capitalised, sizes kept (30L, 500ml)."""
    return " ".join(w.capitalize() if w.isalpha() else w for w in value.split())


def _reserved_words() -> set[str]:
    """Every word the fixed vocabularies use: invented names must not collide with them."""
    texts: list[str] = []
    for pt in PRODUCT_TYPES:
        texts += [pt.name, pt.department, *pt.synonyms, *pt.keywords, *pt.uses]
        for _, values, _ in pt.attributes:
            texts += list(values)
    for use, _ in SHARED_USES:
        texts.append(use)
    for phrase, _, statement, answer, _ in FACTS:
        texts += [phrase, statement, answer]
    for name, _ in INVENTED_ACTIVITIES + INVENTED_INSTRUMENTS:
        texts.append(name)
    texts += [*QA_WRAPPERS, *ALTERNATIVE_TEMPLATES, *NEGATIVE_TEMPLATES, *BUDGET_WORDS, *NEGATION_WORDS]
    for wrappers in KNOWLEDGE_WRAPPERS.values():
        texts += list(wrappers)
    return {w for t in texts for w in words(t)}


def _make_brands(rng: random.Random, departments: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    reserved = _reserved_words()
    used: set[str] = set()

    def fresh() -> str:
        while True:
            name = rng.choice(_BRAND_HEADS) + rng.choice(_BRAND_TAILS)
            if name not in used and name not in reserved:
                used.add(name)
                return name.capitalize()

    standard = {d: [fresh() for _ in range(N_STANDARD_BRANDS_PER_DEPARTMENT)] for d in departments}
    premium = {pt.name: [fresh() for _ in range(N_PREMIUM_BRANDS_PER_TYPE)] for pt in PRODUCT_TYPES}
    return standard, premium


def _money(rng: random.Random, value: float) -> float:
    return round(max(1, int(value)) + rng.choice((0.99, 0.49, 0.95, 0.0)), 2)


def _allocate(total: int, n: int, rng: random.Random) -> list[int]:
    base, extra = divmod(total, n)
    counts = [base] * n
    for idx in rng.sample(range(n), extra):
        counts[idx] += 1
    return counts


def _build_catalog(cfg: WorldConfig, rng: random.Random, standard: dict[str, list[str]],
                   premium: dict[str, list[str]]) -> tuple[list[_Item], dict[str, dict]]:
    """Items of every type, shuffled, with ids in file order; and each premium brand's price band."""
    bands: dict[str, dict] = {}
    drafts: list[_Item] = []
    seen_titles: set[str] = set()
    counts = _allocate(cfg.n_items, len(PRODUCT_TYPES), rng)
    for pt, n_t in zip(PRODUCT_TYPES, counts):
        lo, hi = pt.price
        for brand in premium[pt.name]:
            band_lo = hi * rng.uniform(1.2, 1.5)
            bands[brand] = {"product_type": pt.name,
                            "price_band": [round(band_lo, 2), round(band_lo * rng.uniform(1.4, 1.8), 2)]}
        n_premium = min(round(n_t * cfg.premium_share), max(0, n_t - 1))
        for k in range(n_t):
            is_premium = k < n_premium
            for _attempt in range(30):
                attrs = {name: rng.choice(values) for name, values, _ in pt.attributes}
                brand = rng.choice(premium[pt.name] if is_premium else standard[pt.department])
                pre = [_display(attrs[a]) for a, _, pos in pt.attributes if pos == "pre"]
                post = [_display(attrs[a]) for a, _, pos in pt.attributes if pos == "post"]
                title = " ".join([brand, *pre, pt.name, *post])
                if title not in seen_titles:
                    break
            seen_titles.add(title)
            if is_premium:
                band = bands[brand]["price_band"]
                price = _money(rng, rng.uniform(band[0], band[1]))
            elif rng.random() < 0.1:  # upscale standard items: some cost more than a premium band starts
                price = _money(rng, rng.uniform(hi, hi * 1.7))
            else:
                price = _money(rng, rng.uniform(lo, hi))
            drafts.append(_Item("", title, pt.name, pt.department, brand, price, attrs))
    rng.shuffle(drafts)
    width = max(5, len(str(len(drafts))))
    for idx, item in enumerate(drafts, start=1):
        item.item_id = f"I{idx:0{width}d}"
    return drafts, bands


def _invented_facts(rng: random.Random, taken: set[str]) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """Events and people of this world only; their facts are stated in knowledge.json."""
    facts = []
    used: set[str] = set()

    def place() -> str:
        while True:
            name = rng.choice(_PLACE_PARTS[0]) + rng.choice(_PLACE_PARTS[1])
            if name not in used and name not in taken:
                used.add(name)
                return name

    def person() -> str:
        while True:
            name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
            if name not in used:
                used.add(name)
                return name

    for activity, types in INVENTED_ACTIVITIES:
        for event in ("open", "cup"):
            p = place()
            facts.append((f"the {p} {event}", "activity",
                          f"The {p.capitalize()} {event.capitalize()} is a {activity} competition.", activity, types))
        who = person()
        facts.append((f"the passion of {who}", "activity",
                      f"{who.title()} is famous for {activity}.", activity, types))
    for instrument, types in INVENTED_INSTRUMENTS:
        for _ in range(3):
            who = person()
            facts.append((f"the instrument {who} plays", "thing",
                          f"{who.title()} is a celebrated {instrument} player.", instrument, types))
    return facts


class _Sampler:
    """Draws unique queries of one category, checking relevance and the overlap rule."""

    def __init__(self, rng: random.Random, items: list[_Item], cap: int) -> None:
        self.rng = rng
        self.cap = cap
        self.by_type: dict[str, list[_Item]] = {}
        for item in sorted(items, key=lambda i: i.item_id):
            self.by_type.setdefault(item.product_type, []).append(item)
        self.title_words = {i.item_id: set(words(i.title)) for i in items}
        self.texts: set[str] = set()
        self.rejected: Counter = Counter()

    def cap_relevant(self, groups: list[list[_Item]]) -> list[str]:
        """At most `cap` ids, drawn round-robin over the groups (one group per product type)."""
        pools = [list(g) for g in groups if g]
        for pool in pools:
            self.rng.shuffle(pool)
        chosen: list[str] = []
        while pools and len(chosen) < self.cap:
            for pool in pools:
                if pool and len(chosen) < self.cap:
                    chosen.append(pool.pop().item_id)
            pools = [p for p in pools if p]
        return sorted(chosen)

    def overlaps(self, text: str, relevant: list[str]) -> bool:
        qwords = set(words(text))
        return any(qwords & self.title_words[i] for i in relevant)

    def accept(self, category: str, text: str, relevant: list[str], strict: bool) -> bool:
        if not relevant:
            self.rejected[f"{category}/no_relevant"] += 1
            return False
        if text in self.texts:
            self.rejected[f"{category}/duplicate"] += 1
            return False
        if strict and self.overlaps(text, relevant):
            self.rejected[f"{category}/overlap"] += 1
            return False
        self.texts.add(text)
        return True


def _plain(s: _Sampler, types: list[ProductType]) -> tuple[str, list[str]]:
    rng = s.rng
    pt = rng.choice(types)
    anchor = rng.choice(s.by_type[pt.name])
    n_attrs = 1 if len(pt.attributes) < 2 or rng.random() < 0.5 else 2
    chosen = sorted(rng.sample(range(len(pt.attributes)), n_attrs))
    use_brand = rng.random() < 0.2
    phrase = pt.name.lower() if rng.random() < 0.7 or not pt.synonyms else rng.choice(pt.synonyms)
    pre = [anchor.attributes[pt.attributes[i][0]] for i in chosen if pt.attributes[i][2] == "pre"]
    post = [anchor.attributes[pt.attributes[i][0]] for i in chosen if pt.attributes[i][2] == "post"]
    if rng.choice(PLAIN_ORDERS) == "values_first" or not pre:
        parts = [*pre, phrase, *post]
    else:
        parts = [phrase, *pre, *post]
    if use_brand:
        parts = [anchor.brand.lower(), *parts]
    text = " ".join(parts)
    wanted = {pt.attributes[i][0]: anchor.attributes[pt.attributes[i][0]] for i in chosen}
    matches = [i for i in s.by_type[pt.name]
               if all(i.attributes[a] == v for a, v in wanted.items()) and (not use_brand or i.brand == anchor.brand)]
    return text, s.cap_relevant([matches])


def _qa(s: _Sampler, uses: list[tuple[str, tuple[str, ...]]]) -> tuple[str, list[str], str]:
    need, type_names = s.rng.choice(uses)
    text = s.rng.choice(QA_WRAPPERS).format(n=need)
    return text, s.cap_relevant([s.by_type.get(t, []) for t in type_names]), need


def _alternative(s: _Sampler, bands: dict[str, dict]) -> tuple[str, list[str], str]:
    brand = s.rng.choice(sorted(bands))
    band = bands[brand]
    text = s.rng.choice(ALTERNATIVE_TEMPLATES).format(b=brand.lower())
    cheaper = [i for i in s.by_type.get(band["product_type"], [])
               if i.brand not in bands and i.price < band["price_band"][0]]
    return text, s.cap_relevant([cheaper]), brand


def _negative(s: _Sampler, types: list[ProductType]) -> tuple[str, list[str]]:
    rng = s.rng
    pt = rng.choice(types)
    negatable = [(a, vals) for a, vals, pos in pt.attributes if pos == "pre"]
    attr, values = rng.choice(negatable)
    value = rng.choice(values)
    phrase = pt.name.lower() if rng.random() < 0.75 or not pt.synonyms else rng.choice(pt.synonyms)
    text = rng.choice(NEGATIVE_TEMPLATES).format(t=phrase, v=value)
    lacking = [i for i in s.by_type[pt.name] if i.attributes[attr] != value]
    return text, s.cap_relevant([lacking])


def _knowledge(s: _Sampler, facts: list[tuple[str, str, str, str, tuple[str, ...]]]) -> tuple[str, list[str], str]:
    phrase, kind, _, _, type_names = s.rng.choice(facts)
    text = s.rng.choice(KNOWLEDGE_WRAPPERS[kind]).format(f=phrase)
    return text, s.cap_relevant([s.by_type.get(t, []) for t in type_names]), phrase


def _knowledge_doc(departments: list[str], standard: dict[str, list[str]], premium: dict[str, list[str]],
                   bands: dict[str, dict], uses: list[tuple[str, tuple[str, ...]]],
                   facts: list[tuple[str, str, str, str, tuple[str, ...]]]) -> dict[str, Any]:
    product_types = {}
    for pt in PRODUCT_TYPES:
        product_types[pt.name] = {
            "department": pt.department,
            "synonyms": list(pt.synonyms),
            "keywords": list(pt.keywords),
            "attributes": {a: list(v) for a, v, _ in pt.attributes},
            "negatable_attributes": [a for a, _, pos in pt.attributes if pos == "pre"],
            "price_range": [float(pt.price[0]), float(pt.price[1])],
            "standard_brands": list(standard[pt.department]),
            "premium_brands": list(premium[pt.name]),
        }
    brands = {}
    for dept in departments:
        for b in standard[dept]:
            brands[b] = {"tier": "standard", "department": dept,
                         "product_types": [pt.name for pt in PRODUCT_TYPES if pt.department == dept]}
    for pt in PRODUCT_TYPES:
        for b in premium[pt.name]:
            brands[b] = {"tier": "premium", "department": pt.department, "product_types": [pt.name]}
    return {
        "departments": {d: [pt.name for pt in PRODUCT_TYPES if pt.department == d] for d in departments},
        "product_types": product_types,
        "brands": brands,
        "premium_brands": {b: dict(bands[b]) for b in sorted(bands)},
        "uses": [{"use": u, "product_types": list(t)} for u, t in uses],
        "facts": [{"fact": f, "kind": k, "statement": st, "answer": a, "product_types": list(t)}
                  for f, k, st, a, t in facts],
        "budget_words": list(BUDGET_WORDS),
        "negation_words": list(NEGATION_WORDS),
    }


def _wordings_doc() -> list[dict[str, str]]:
    """Language knowledge: words and what people also say for them (the phrasing's word rules).
    ``eval_only``: a rule only eval queries use; the pre-training corpus states it as a word
    (a glossary line) but never says a use or a fact with it."""
    return [{"word": src, "also_said": dst, "eval_only": name in HELDOUT_WORDINGS} for name, src, dst in WORDINGS]


def _order_by_intent(members: list[int], intent_of: dict[int, str], n_eval: int,
                     rng: random.Random) -> tuple[list[int], int]:
    """``members`` reordered so that the first of them are eval queries whose intents no later
    member shares, and how many they are. Whole intent groups are taken in a seeded order while
    they fit in ``n_eval``; if they fall short, the smallest of the other groups are moved over
    whole (so a few more than ``n_eval``), as long as one group stays for training."""
    groups: dict[str, list[int]] = {}
    for k in members:
        groups.setdefault(intent_of[k], []).append(k)
    names = sorted(groups)
    rng.shuffle(names)
    eval_part, rest = take_whole_groups(groups, names, n_eval, keep=1)
    return eval_part + [k for name in rest for k in groups[name]], len(eval_part)


def take_whole_groups(groups: dict[str, list], order: list[str], target: int, keep: int = 1,
                      size_key: Callable[[str], object] | None = None) -> tuple[list, list[str]]:
    """Members of whole ``groups`` up to about ``target`` of them, and the names of the groups left.

    Groups are taken in ``order`` while they fit in ``target``; when that falls short, the
    smallest of the rest (``size_key``, default the group's size; ties in ``order``) are added
    whole until it is reached, as long as more than ``keep`` groups stay behind. Shared by the
    eval split (:func:`_order_by_intent`) and the router's held-out share
    (:func:`components.routing.holdout.take_share`)."""
    key = size_key or (lambda name: len(groups[name]))
    taken: list = []
    rest: list[str] = []
    for name in order:
        if len(taken) + len(groups[name]) <= target:
            taken += groups[name]
        else:
            rest.append(name)
    while len(taken) < target and len(rest) > keep:
        name = min(rest, key=key)
        rest.remove(name)
        taken += groups[name]
    return taken, rest


def _phrase_all(cfg: WorldConfig, drafted: list[tuple[str, str, list[str]]], said_as: dict[int, str],
                split_of: dict[int, str], sampler: "_Sampler") -> dict[int, Phrased]:
    """Each drafted query's final text (``world.phrasing: varied``), in drafted order. A draw whose
    text repeats another query's, or (hard categories) shares a word with a relevant title, is
    drawn again; after ``tries`` the core is kept as it is (unique and checked already)."""
    phraser = Phraser(cfg.seed)
    strict = {"qa", "alternative", "knowledge"}
    taken = {text for _, text, _ in drafted}
    out: dict[int, Phrased] = {}
    for k, (category, core, relevant) in enumerate(drafted):
        taken.discard(core)
        intent = said_as.get(k, core)
        for _ in range(20):
            got = phraser.phrase(category, core, intent, split_of[k])
            if got.text not in taken and not (category in strict and sampler.overlaps(got.text, relevant)):
                break
        else:
            before, _, after = core.partition(intent)
            got = Phrased(core, "bare", "only" if not before.strip() and not after.strip() else
                          ("middle" if before.strip() and after.strip() else "last" if before.strip() else "first"),
                          "verbatim", [], False, False, False)
        taken.add(got.text)
        out[k] = got
    return out


def _draft_dev(cfg: WorldConfig, drafted: list[tuple[str, str, list[str]]], said_as: dict[int, str],
               split_of: dict[int, str], sampler: "_Sampler", texts: list[str]) -> tuple[list[tuple[int, Phrased]], dict]:
    """The dev split (``world.dev_fraction`` of each category's training queries, phrasing "varied"
    only): training queries' cores said again as the traffic says them (the eval split's phrasing
    distribution), each training query at most once, from streams of their own (so the train and
    eval rows do not change). A draw
    whose text is another query's after normalisation, or (hard categories) shares a word with a
    relevant title, is drawn again; after ``tries`` that query is skipped (a shortfall). Returns
    (drafted index, phrasing) pairs in a shuffled order, and the shortfall per category."""
    from components.validation.text_rules import normalized_query

    if cfg.dev_fraction <= 0 or cfg.phrasing != "varied":
        return [], {}
    rng = random.Random(f"lrem-dev-{cfg.seed}")
    phraser = Phraser(cfg.seed, stream="dev-")
    strict = {"qa", "alternative", "knowledge"}
    taken = {normalized_query(t) for t in texts}
    targets: dict[str, int] = {}
    out: list[tuple[int, Phrased]] = []
    shortfall: dict[str, int] = {}
    for category in CATEGORIES:
        members = [k for k, d in enumerate(drafted) if d[0] == category and split_of[k] == "train"]
        targets[category] = min(len(members), round(len(members) * cfg.dev_fraction))
        rng.shuffle(members)
        got = 0
        for k in members:
            if got == targets[category]:
                break
            _, core, relevant = drafted[k]
            for _ in range(20):
                phrased = phraser.phrase(category, core, said_as.get(k, core), "dev")
                key = normalized_query(phrased.text)
                if key not in taken and not (category in strict and sampler.overlaps(phrased.text, relevant)):
                    taken.add(key)
                    out.append((k, phrased))
                    got += 1
                    break
        if got < targets[category]:
            shortfall[category] = targets[category] - got
    rng.shuffle(out)  # ids in a mixed-category order, as the train and eval rows (a head of them is a sample)
    return out, shortfall


def _phrasing_stats(queries: list[dict]) -> dict:
    def count(key: str) -> dict:
        return {f"{split}/{v}": n for (split, v), n in sorted(Counter((q["split"], str(q[key])) for q in queries).items())}

    return {"phrasing": {key: count(key) for key in ("pattern", "intent_position", "wording", "typo", "heldout_phrasing")}}


def generate_world(cfg: WorldConfig, out_dir: Path) -> dict:
    """Write catalog, queries, judgments and knowledge for ``cfg.seed`` into ``out_dir``; return stats."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    departments = sorted({pt.department for pt in PRODUCT_TYPES})
    standard, premium = _make_brands(rng, departments)
    items, bands = _build_catalog(cfg, rng, standard, premium)
    taken = {w for b in list(bands) + [x for v in standard.values() for x in v] for w in words(b)}
    facts = list(FACTS) + _invented_facts(rng, taken | _reserved_words())
    uses = [(u, (pt.name,)) for pt in PRODUCT_TYPES for u in pt.uses] + list(SHARED_USES)

    sampler = _Sampler(rng, items, cfg.max_relevant)
    types = [pt for pt in PRODUCT_TYPES if sampler.by_type.get(pt.name)]
    draws = {  # -> (text, relevant ids, intent: the use, premium brand or fact; None for plain/negative)
        "plain": lambda: (*_plain(sampler, types), None),
        "qa": lambda: _qa(sampler, uses),
        "alternative": lambda: _alternative(sampler, bands),
        "negative": lambda: (*_negative(sampler, types), None),
        "knowledge": lambda: _knowledge(sampler, facts),
    }
    strict = {"qa", "alternative", "knowledge"}
    targets = dict(zip(CATEGORIES, _allocate(cfg.n_queries, len(CATEGORIES), random.Random(cfg.seed + 1))))
    drafted: list[tuple[str, str, list[str]]] = []  # (category, text, relevant)
    intent_of: dict[int, str] = {}  # drafted index -> intent (hard categories)
    said_as: dict[int, str] = {}  # drafted index -> the intent's words as the text says them
    shortfall: dict[str, int] = {}
    for category in CATEGORIES:
        got, attempts = 0, 0
        while got < targets[category] and attempts < 50 * targets[category] + 100:
            attempts += 1
            text, relevant, intent = draws[category]()
            if sampler.accept(category, text, relevant, category in strict):
                if intent is not None:
                    intent_of[len(drafted)] = intent
                    said_as[len(drafted)] = intent.lower() if category == "alternative" else intent
                drafted.append((category, text, relevant))
                got += 1
        if got < targets[category]:
            shortfall[category] = targets[category] - got

    # Split by query (or, for the hard categories with hard_split "intent", by intent), stratified
    # by category; then ids in a shuffled (mixed-category) order.
    split_of: dict[int, str] = {}
    for category in CATEGORIES:
        members = [k for k, d in enumerate(drafted) if d[0] == category]
        rng.shuffle(members)
        n_eval = round(len(members) * cfg.eval_fraction)
        if cfg.eval_fraction > 0 and len(members) >= 2:  # tiny worlds still get both splits
            n_eval = min(max(1, n_eval), len(members) - 1)
        if cfg.hard_split == "intent" and category in strict:
            members, n_eval = _order_by_intent(members, intent_of, n_eval, rng)
        for pos, k in enumerate(members):
            split_of[k] = "eval" if pos < n_eval else "train"
    phrased = _phrase_all(cfg, drafted, said_as, split_of, sampler) if cfg.phrasing == "varied" else {}
    order = list(range(len(drafted)))
    rng.shuffle(order)
    width = max(5, len(str(len(order))))
    queries, judgments = [], []
    for idx, k in enumerate(order, start=1):
        category, text, relevant = drafted[k]
        qid = f"Q{idx:0{width}d}"
        row = {"query_id": qid, "text": text, "category": category, "split": split_of[k]}
        if k in phrased:
            row["text"] = phrased[k].text
            row.update(phrased[k].fields())
            row["intent"] = intent_of.get(k, text)
        queries.append(row)
        judgments += [{"query_id": qid, "item_id": iid} for iid in relevant]
    dev, dev_shortfall = _draft_dev(cfg, drafted, said_as, split_of, sampler, [q["text"] for q in queries])
    for idx, (k, got) in enumerate(dev, start=len(order) + 1):
        category, text, relevant = drafted[k]
        qid = f"Q{idx:0{width}d}"
        queries.append({"query_id": qid, "text": got.text, "category": category, "split": "dev", **got.fields(),
                        "intent": intent_of.get(k, text)})
        judgments += [{"query_id": qid, "item_id": iid} for iid in relevant]

    knowledge = _knowledge_doc(departments, standard, premium, bands, uses, facts)
    if cfg.phrasing == "varied":
        knowledge["wordings"] = _wordings_doc()
    write_jsonl(out_dir / schema.CATALOG_FILE, [i.row() for i in items])
    write_jsonl(out_dir / schema.QUERIES_FILE, queries)
    write_jsonl(out_dir / schema.JUDGMENTS_FILE, judgments)
    with open(out_dir / schema.KNOWLEDGE_FILE, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(json.dumps(knowledge, sort_keys=True, indent=2, ensure_ascii=False) + "\n")

    per_query = Counter(j["query_id"] for j in judgments)
    n_rel = [per_query[q["query_id"]] for q in queries]
    by_cat_split = Counter((q["category"], q["split"]) for q in queries)
    splits = schema.SPLITS + (("dev",) if dev else ())
    return {
        "seed": cfg.seed,
        "n_items": len(items),
        "n_product_types": len({i.product_type for i in items}),
        "n_departments": len({i.department for i in items}),
        "n_brands": len(knowledge["brands"]),
        "n_premium_brands": len(bands),
        "n_queries": len(queries),
        "n_judgments": len(judgments),
        "n_uses": len(uses),
        "n_facts": len(facts),
        "items_per_department": dict(sorted(Counter(i.department for i in items).items())),
        "queries_per_category": {c: sum(by_cat_split[(c, s)] for s in splits) for c in CATEGORIES},
        "queries_per_split": {s: sum(by_cat_split[(c, s)] for c in CATEGORIES) for s in splits},
        "queries_per_category_split": {f"{c}/{s}": by_cat_split[(c, s)] for c in CATEGORIES for s in splits},
        "relevant_per_query": {"min": min(n_rel, default=0), "max": max(n_rel, default=0),
                               "mean": round(sum(n_rel) / max(1, len(n_rel)), 2)},
        "rejected_queries": dict(sorted(sampler.rejected.items())),
        **(_phrasing_stats(queries) if phrased else {}),
        "query_shortfall": shortfall,
        **({"dev_shortfall": dev_shortfall} if dev_shortfall else {}),
        "generation_seconds": round(time.perf_counter() - started, 3),
    }


__all__ = ["generate_world", "words", "PRODUCT_TYPES"]
