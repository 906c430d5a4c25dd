// A link on every page to the same page in the other edition: the English
// book is built at the site's root, the Chinese one under zh-CN/.
(function () {
    const buttons = document.querySelector(".right-buttons");
    if (!buttons || typeof path_to_root === "undefined") {
        return;
    }
    const chinese = document.documentElement.lang === "zh-CN";
    // The root of this edition, and this page's path below it.
    const root = new URL(path_to_root || "./", window.location.href);
    const page = window.location.href.slice(root.href.length);
    const other = chinese ? new URL("../", root) : new URL("zh-CN/", root);
    const link = document.createElement("a");
    link.href = other.href + page;
    link.className = "language-switch";
    link.textContent = chinese ? "English" : "中文";
    link.title = chinese ? "Read this page in English" : "阅读本页的简体中文版";
    link.setAttribute("lang", chinese ? "en" : "zh-CN");
    link.style.marginInlineStart = "0.5em";
    buttons.prepend(link);
})();
